// Held out from training: bars of an equalizer rise and fall with layered sines.
function setup() {
  createCanvas(256, 256);
  noStroke();
}

function draw() {
  background(230);
  const t = millis() / 1000;
  for (let i = 0; i < 16; i++) {
    const h = 120 + 100 * sin(t * 2 + i * 0.6) * cos(t * 0.7 + i * 0.3);
    fill(40 + i * 8);
    rect(i * 16 + 2, 256 - h, 12, h);
  }
}
