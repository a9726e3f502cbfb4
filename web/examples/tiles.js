// tiles: a 4x4 wall that starts as one path through latent space (read it like a page), then keeps
// changing: every 400 ms a tile morphs from what it shows now into another dataset frame.
// Instance mode: vqart works the same; the model's p5.Images are drawn with this sketch's `p`.
new p5(p => {
  const N = 4, CELL = 144, STEPS = 24;
  let model, refs = [], tiles = [];

  p.setup = async () => {
    p.createCanvas(N * CELL, N * CELL);
    p.noSmooth();
    model = await vqart.connect();
    for (const [name, count] of Object.entries(model.info.sketches)) {
      for (let i = 0; i < count; i += 8) refs.push(`${name}:${i}`);
    }
    const path = await model.interpolate(p.random(refs), p.random(refs), { steps: N * N });
    tiles = path.map(img => ({ frames: [img], t: 0, busy: false }));
    setInterval(morphOne, 400);
  };

  async function morphOne() {
    const tile = p.random(tiles);
    if (tile.busy) return;
    tile.busy = true;
    // An endpoint can be an image: the tile's current p5.Image travels to the server as PNG bytes.
    tile.frames = await model.interpolate(tile.frames[tile.t], p.random(refs), { steps: STEPS });
    tile.t = 0;
    tile.busy = false;
  }

  p.draw = () => {
    p.background(13);
    tiles.forEach((tile, i) => {
      const x = (i % N) * CELL + 2, y = Math.floor(i / N) * CELL + 2;
      tile.t = Math.min(tile.t + 1, tile.frames.length - 1);
      p.image(tile.frames[tile.t], x, y, CELL - 4, CELL - 4);
      // A fading outline marks the tiles that are on their way somewhere.
      const left = tile.frames.length > 1 ? 1 - tile.t / (tile.frames.length - 1) : 0;
      if (left > 0) {
        p.noFill();
        p.stroke(255, 180, 84, 255 * left);
        p.strokeWeight(3);
        p.rect(x + 1.5, y + 1.5, CELL - 7, CELL - 7);
      }
    });
  };
});
