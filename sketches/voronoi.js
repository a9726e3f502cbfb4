// Voronoi cells: twenty-four seeds drift on Lissajous paths; every pixel takes a gray from its
// nearest seed and darkens towards the cell borders, giving a shifting mosaic of soft tiles.

const S = 96; // computed at low resolution, scaled up to the canvas
const SEEDS = 24;
let cells, seeds = [];

function setup() {
  createCanvas(256, 256);
  cells = createGraphics(S, S);
  cells.pixelDensity(1);
  for (let i = 0; i < SEEDS; i++) seeds.push({ a: random(1, 3), b: random(1, 3), p: random(TWO_PI), shade: random(40, 255) });
}

function draw() {
  const t = frameCount * 0.01;
  const pts = seeds.map((s) => [S / 2 + S * 0.48 * sin(s.a * t + s.p), S / 2 + S * 0.48 * cos(s.b * t + 2 * s.p)]);
  cells.loadPixels();
  const px = cells.pixels;
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      let d1 = Infinity, d2 = Infinity, k = 0;
      for (let i = 0; i < SEEDS; i++) {
        const d = (x - pts[i][0]) ** 2 + (y - pts[i][1]) ** 2;
        if (d < d1) { d2 = d1; d1 = d; k = i; } else if (d < d2) d2 = d;
      }
      const edge = Math.min(1, (Math.sqrt(d2) - Math.sqrt(d1)) / 3);
      const g = seeds[k].shade * edge;
      const i = 4 * (y * S + x);
      px[i] = px[i + 1] = px[i + 2] = g;
      px[i + 3] = 255;
    }
  }
  cells.updatePixels();
  image(cells, 0, 0, width, height);
}
