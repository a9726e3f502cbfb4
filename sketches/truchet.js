// Truchet tiles: a 6x6 grid of quarter-circle tiles whose arcs join into winding paths.
// Tiles flip one by one in a travelling wave, and the paths are shaded bands of gray.

const N = 6;
let flips = [];

function setup() {
  createCanvas(256, 256);
  for (let i = 0; i < N * N; i++) flips.push(random() < 0.5 ? 0 : 1);
  noFill();
  strokeCap(SQUARE);
}

function draw() {
  background(35);
  const s = width / N;
  for (let j = 0; j < N; j++) {
    for (let i = 0; i < N; i++) {
      const k = j * N + i;
      // a diagonal wave passes over the grid; each tile turns a quarter as it is hit
      const wave = (frameCount * 0.08 - (i + j) * 0.5) % 6;
      const turn = flips[k] + (wave > 0 && wave < 1 ? wave : wave >= 1 ? 1 : 0);
      push();
      translate((i + 0.5) * s, (j + 0.5) * s);
      rotate(HALF_PI * turn);
      fill((i * 37 + j * 53) % 70 + 60);
      noStroke();
      rect(-s / 2, -s / 2, s, s);
      noFill();
      for (const [w, c] of [[s * 0.34, 235], [s * 0.12, 10]]) {
        stroke(c);
        strokeWeight(w);
        arc(-s / 2, -s / 2, s, s, 0, HALF_PI);
        arc(s / 2, s / 2, s, s, PI, PI + HALF_PI);
      }
      pop();
    }
  }
}
