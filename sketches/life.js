// Cellular automaton: Conway's Game of Life on a wrapping 64x64 grid. Dead cells keep a fading
// memory of having lived, so the board is a field of gray trails behind the white live cells.
// When the board settles it is reseeded in a random block.

const N = 64;
let alive, age;

function setup() {
  createCanvas(256, 256);
  noStroke();
  alive = new Uint8Array(N * N).map(() => (random() < 0.35 ? 1 : 0));
  age = new Float32Array(N * N);
}

function draw() {
  const next = new Uint8Array(N * N);
  let changed = 0;
  for (let y = 0; y < N; y++) {
    for (let x = 0; x < N; x++) {
      let n = 0;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          if (dx || dy) n += alive[((y + dy + N) % N) * N + ((x + dx + N) % N)];
        }
      }
      const i = y * N + x;
      next[i] = n === 3 || (n === 2 && alive[i]) ? 1 : 0;
      changed += next[i] !== alive[i];
      age[i] = next[i] ? 255 : age[i] * 0.93;
    }
  }
  alive = next;
  if (changed < 40) seedBlock();

  const s = width / N;
  background(0);
  for (let i = 0; i < N * N; i++) {
    if (age[i] < 4) continue;
    fill(alive[i] ? 255 : age[i] * 0.7);
    rect((i % N) * s, floor(i / N) * s, s, s);
  }
}

function seedBlock() {
  const x0 = floor(random(N - 16));
  const y0 = floor(random(N - 16));
  for (let y = y0; y < y0 + 16; y++) for (let x = x0; x < x0 + 16; x++) alive[y * N + x] = random() < 0.5 ? 1 : 0;
}
