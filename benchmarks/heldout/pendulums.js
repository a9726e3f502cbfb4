// Held out from training: a row of pendulums of slowly different lengths drifts in and out of phase.
function setup() {
  createCanvas(256, 256);
}

function draw() {
  background(0);
  const t = millis() / 1000;
  stroke(120);
  strokeWeight(2);
  for (let i = 0; i < 12; i++) {
    const len = 60 + i * 12, a = 0.8 * sin(t * sqrt(9.8 / len) * 6);
    const x = 128 + len * sin(a), y = 10 + len * cos(a);
    line(128, 10, x, y);
    fill(255);
    circle(x, y, 12);
  }
}
