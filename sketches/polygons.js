// Rotating polygons: a 4x4 grid of nested polygons, each cell with its own number of sides,
// spin direction and gray levels, over a diagonal gradient. Loops every 240 frames at 30 fps.

const CELLS = 4;

function setup() {
  createCanvas(256, 256);
}

function draw() {
  const t = (frameCount % 240) / 240; // one full turn of the loop
  const g = drawingContext.createLinearGradient(0, 0, width, height);
  g.addColorStop(0, '#202020');
  g.addColorStop(1, '#c8c8c8');
  drawingContext.fillStyle = g;
  drawingContext.fillRect(0, 0, width, height); // p5's rect() would use its own fill

  const s = width / CELLS;
  for (let i = 0; i < CELLS; i++) {
    for (let j = 0; j < CELLS; j++) {
      const sides = 3 + ((i + 2 * j) % 5);
      const dir = (i + j) % 2 ? 1 : -1;
      push();
      translate((i + 0.5) * s, (j + 0.5) * s);
      for (let k = 0; k < 4; k++) {
        const r = s * (0.62 - k * 0.13);
        rotate(dir * TWO_PI * t / sides + k * 0.3);
        fill((k * 70 + i * 30 + j * 15) % 256);
        stroke(255 - ((k * 60 + j * 40) % 256));
        strokeWeight(3);
        polygon(r, sides);
      }
      pop();
    }
  }
}

function polygon(r, sides) {
  beginShape();
  for (let a = 0; a < sides; a++) {
    vertex(r * cos((TWO_PI * a) / sides), r * sin((TWO_PI * a) / sides));
  }
  endShape(CLOSE);
}
