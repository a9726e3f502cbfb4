// mirror: draw on the left (or let the pen wander); the model redraws it from its codebook in the middle, and
// on the right its motion prior sets the drawing moving, dreaming on from it (restarted at every stroke).
const SIDE = 300;
let model, ink, seen, moving, motion, busy = false, stroked = false;

async function setup() {
  createCanvas(SIDE * 3, SIDE + 30);
  ink = createGraphics(64, 64);
  ink.pixelDensity(1);
  ink.background(0);
  noSmooth();
  model = await vqart.connect();
  animate();
}

function animate() {
  if (!model || !model.info.motion) return;  // a run without a motion prior: the middle panel only
  if (motion) motion.stop();
  const start = createGraphics(64, 64);
  start.pixelDensity(1);
  start.image(ink, 0, 0);
  motion = model.stream({ mode: 'motion', start, fps: 20, temperature: 1 }, img => { moving = img; });
}

function draw() {
  background(13);
  // The pen: the mouse while pressed, otherwise a slow Lissajous wander.
  const drawing = mouseIsPressed && mouseX < SIDE;
  const [x, y] = drawing
    ? [mouseX / SIDE * 64, mouseY / SIDE * 64]
    : [32 + 24 * sin(frameCount / 37), 32 + 24 * sin(frameCount / 23)];
  ink.noStroke();
  ink.fill(0, 12);
  ink.rect(0, 0, 64, 64);
  ink.fill(255);
  ink.circle(x, y, 7);
  if (stroked && !drawing) animate();  // a stroke just ended: dream on from the new drawing
  stroked = drawing;
  if (model && !busy) {
    busy = true;
    model.reconstruct(ink).then(img => { seen = img; }).finally(() => { busy = false; });
  }
  image(ink, 0, 0, SIDE, SIDE);
  if (seen) image(seen, SIDE, 0, SIDE, SIDE);
  if (moving) image(moving, SIDE * 2, 0, SIDE, SIDE);
  fill(139);
  textSize(13);
  text('you', 8, SIDE + 20);
  text('the model\'s copy', SIDE + 8, SIDE + 20);
  text(model && !model.info.motion ? 'in motion (train a motion prior)' : 'in motion', 2 * SIDE + 8, SIDE + 20);
}
