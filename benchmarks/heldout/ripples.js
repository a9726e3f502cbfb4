// Held out from training: rings spread from three moving centres and fade.
function setup() {
  createCanvas(256, 256);
  noFill();
}

function draw() {
  background(15);
  const t = millis() / 1000;
  for (let c = 0; c < 3; c++) {
    const x = 128 + 80 * cos(t * 0.4 + c * 2.1), y = 128 + 80 * sin(t * 0.3 + c * 1.7);
    for (let r = (t * 40 + c * 30) % 40; r < 260; r += 40) {
      stroke(255, 255 * (1 - r / 260));
      strokeWeight(3);
      circle(x, y, r * 2);
    }
  }
}
