// Rain on a pond: drops land at random spots and spread as expanding rings that thin and fade,
// overlapping into a busy texture of circles over a rippled horizontal shimmer.

let rings = [];

function setup() {
  createCanvas(256, 256);
  noFill();
}

function draw() {
  noStroke();
  for (let y = 0; y < height; y += 4) {
    fill(70 + 25 * sin(y * 0.15 + frameCount * 0.1) + y * 0.2);
    rect(0, y, width, 4);
  }
  if (frameCount % 2 === 0) rings.push({ x: random(width), y: random(height), r: 0, speed: random(1, 2.2) });
  for (const ring of rings) {
    ring.r += ring.speed;
    const fade = 1 - ring.r / 90;
    stroke(255, 255 * fade);
    strokeWeight(1 + 4 * fade);
    circle(ring.x, ring.y, 2 * ring.r);
    stroke(0, 160 * fade);
    strokeWeight(2);
    circle(ring.x, ring.y, 2 * ring.r - 7);
  }
  rings = rings.filter((ring) => ring.r < 90);
}
