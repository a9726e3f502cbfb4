// Lissajous figures: nine curves with different frequency ratios, their phase sliding so each
// figure turns in and out of itself, drawn as thick gray ribbons over a radial glow.

const RATIOS = [[1, 2], [2, 3], [3, 4], [3, 2], [1, 3], [4, 5], [5, 4], [2, 5], [3, 5]];

function setup() {
  createCanvas(256, 256);
  noFill();
}

function draw() {
  const glow = drawingContext.createRadialGradient(128, 128, 10, 128, 128, 200);
  glow.addColorStop(0, '#5a5a5a');
  glow.addColorStop(1, '#050505');
  drawingContext.fillStyle = glow;
  drawingContext.fillRect(0, 0, width, height); // p5's rect() would use its own (no) fill

  const phase = millis() / 1500;
  const cell = width / 3;
  RATIOS.forEach(([a, b], n) => {
    const cx = (n % 3 + 0.5) * cell;
    const cy = (floor(n / 3) + 0.5) * cell;
    for (let layer = 0; layer < 2; layer++) {
      stroke(layer ? 250 : 140 + n * 10);
      strokeWeight(layer ? 1.5 : 6);
      beginShape();
      for (let k = 0; k <= 200; k++) {
        const u = (k / 200) * TWO_PI;
        vertex(cx + 0.42 * cell * sin(a * u + phase), cy + 0.42 * cell * sin(b * u));
      }
      endShape();
    }
  });
}
