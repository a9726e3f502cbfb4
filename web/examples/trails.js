// trails: the model's walk becomes a flow field. Each particle reads the brightness of the current
// model frame under it and turns that into a heading, leaving a colored trail on a slowly fading canvas.
const COUNT = 600;
let frame, particles = [];

async function setup() {
  createCanvas(600, 600);
  colorMode(HSB, 360, 100, 100, 100);
  background(0);
  particles = Array.from({ length: COUNT }, () => createVector(random(width), random(height)));
  const model = await vqart.connect();
  model.stream({ mode: 'walk', fps: 30, frames: 240 }, img => { frame = img; });
}

function brightnessAt(v) {
  // toImage fills the pixels array, so reading it needs no loadPixels().
  const x = floor(v.x / width * frame.width), y = floor(v.y / height * frame.height);
  return frame.pixels[(y * frame.width + x) * 4] / 255;
}

function draw() {
  noStroke();
  fill(0, 0, 0, 6);
  rect(0, 0, width, height);
  if (!frame) return;
  const t = frameCount / 300;
  strokeWeight(1.6);
  for (const v of particles) {
    const b = brightnessAt(v);
    const heading = b * TWO_PI * 2 + t;
    stroke((200 + b * 160 + t * 40) % 360, 70, 100, 50);
    const next = p5.Vector.fromAngle(heading, 1.5 + 2 * b).add(v);
    line(v.x, v.y, next.x, next.y);
    v.set(next);
    if (v.x < 0 || v.x >= width || v.y < 0 || v.y >= height || random() < 0.004) v.set(random(width), random(height));
  }
  tint(255, 90);
  image(frame, 12, 12, 96, 96);
  noTint();
}
