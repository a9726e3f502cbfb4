// Held out from training: worms of circles crawl along noise fields and leave fading trails.
let worms = [];

function setup() {
  createCanvas(256, 256);
  background(128);
  for (let i = 0; i < 6; i++) worms.push({ x: random(256), y: random(256), a: random(TWO_PI) });
}

function draw() {
  fill(128, 30);
  noStroke();
  rect(0, 0, width, height);
  for (const w of worms) {
    w.a += (noise(w.x / 60, w.y / 60, frameCount / 100) - 0.5) * 0.6;
    w.x = (w.x + 2.5 * cos(w.a) + 256) % 256;
    w.y = (w.y + 2.5 * sin(w.a) + 256) % 256;
    fill(w.a % 2 > 1 ? 255 : 0);
    circle(w.x, w.y, 14);
  }
}
