// mirror: draw on the left (or let the pen wander); the model redraws it on the right using only
// its codebook's tiles, and the two are blended in the middle.
const SIDE = 300;
let model, ink, seen, busy = false;

async function setup() {
  createCanvas(SIDE * 3, SIDE + 30);
  ink = createGraphics(64, 64);
  ink.pixelDensity(1);
  ink.background(0);
  noSmooth();
  model = await vqart.connect();
}

function draw() {
  background(13);
  // The pen: the mouse while pressed, otherwise a slow Lissajous wander.
  const [x, y] = mouseIsPressed && mouseX < SIDE
    ? [mouseX / SIDE * 64, mouseY / SIDE * 64]
    : [32 + 24 * sin(frameCount / 37), 32 + 24 * sin(frameCount / 23)];
  ink.noStroke();
  ink.fill(0, 12);
  ink.rect(0, 0, 64, 64);
  ink.fill(255);
  ink.circle(x, y, 7);
  if (model && !busy) {
    busy = true;
    model.reconstruct(ink).then(img => { seen = img; }).finally(() => { busy = false; });
  }
  image(ink, 0, 0, SIDE, SIDE);
  if (seen) {
    image(seen, SIDE * 2, 0, SIDE, SIDE);
    image(ink, SIDE, 0, SIDE, SIDE);
    blendMode(DIFFERENCE);
    image(seen, SIDE, 0, SIDE, SIDE);
    blendMode(BLEND);
  }
  fill(139);
  textSize(13);
  text('you', 8, SIDE + 20);
  text('difference', SIDE + 8, SIDE + 20);
  text('the model', 2 * SIDE + 8, SIDE + 20);
}
