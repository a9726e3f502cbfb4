// Waves: three point sources send out circular waves whose interference is shaded pixel by
// pixel; the sources wander on slow orbits, so the bright and dark fringes keep reshaping.

const S = 128; // field resolution; drawn scaled up to the canvas
let field;

function setup() {
  createCanvas(256, 256);
  field = createGraphics(S, S);
  field.pixelDensity(1);
}

function draw() {
  const t = millis() / 1000;
  const sources = [0, 1, 2].map((k) => [
    S / 2 + S * 0.3 * cos(t * (0.3 + 0.1 * k) + k * 2.1),
    S / 2 + S * 0.3 * sin(t * (0.4 + 0.07 * k) + k),
  ]);
  field.loadPixels();
  const px = field.pixels;
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      let v = 0;
      for (const [sx, sy] of sources) v += Math.sin(Math.hypot(x - sx, y - sy) * 0.45 - t * 4);
      const g = 128 + 42 * v;
      const i = 4 * (y * S + x);
      px[i] = px[i + 1] = px[i + 2] = g;
      px[i + 3] = 255;
    }
  }
  field.updatePixels();
  image(field, 0, 0, width, height);
}
