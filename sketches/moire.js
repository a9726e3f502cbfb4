// Moire: two line gratings and a set of concentric rings, each slowly rotating or drifting
// against the others, so their interference produces large shifting fringes. The spacing is
// coarse on purpose: the fringes must survive being scaled down to 64x64.

function setup() {
  createCanvas(256, 256);
}

function draw() {
  background(240);
  const t = frameCount / 240;
  strokeWeight(7);
  stroke(0);
  grating(width / 2, height / 2, 0.25 * sin(TWO_PI * t), 16);
  stroke(70);
  grating(width / 2, height / 2, -0.3 * sin(TWO_PI * t) + 0.5, 18);
  noFill();
  stroke(25);
  strokeWeight(6);
  const cx = width / 2 + 70 * cos(TWO_PI * t);
  const cy = height / 2 + 70 * sin(2 * TWO_PI * t);
  for (let d = 10; d < 760; d += 30) circle(cx, cy, d);
}

function grating(cx, cy, angle, gap) {
  push();
  translate(cx, cy);
  rotate(angle);
  for (let x = -200; x <= 200; x += gap) line(x, -200, x, 200);
  pop();
}
