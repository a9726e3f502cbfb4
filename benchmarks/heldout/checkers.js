// Held out from training: a checkerboard warps as its rows slide at different speeds.
function setup() {
  createCanvas(256, 256);
  noStroke();
}

function draw() {
  const t = millis() / 1000;
  background(255);
  fill(20);
  for (let row = 0; row < 8; row++) {
    const shift = 32 * sin(t + row * 0.5);
    for (let col = -1; col < 9; col++) {
      if ((row + col) % 2 === 0) rect(col * 32 + shift, row * 32, 32, 32);
    }
  }
}
