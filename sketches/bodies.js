// Bouncing bodies: fourteen discs of different sizes and grays move under gravity, bounce
// off the walls and collide elastically with each other over a checkerboard floor.

let bodies = [];

function setup() {
  createCanvas(256, 256);
  for (let i = 0; i < 14; i++) {
    const r = random(10, 28);
    bodies.push({ x: random(r, width - r), y: random(r, height / 2), vx: random(-3, 3), vy: random(-2, 2), r, shade: (i * 47) % 256 });
  }
}

function draw() {
  noStroke();
  for (let j = 0; j < 8; j++) for (let i = 0; i < 8; i++) {
    fill((i + j) % 2 ? 150 : 105);
    rect(i * 32, j * 32, 32, 32);
  }
  for (const b of bodies) {
    b.vy += 0.12;
    b.x += b.vx;
    b.y += b.vy;
    if (b.x < b.r || b.x > width - b.r) { b.vx *= -1; b.x = constrain(b.x, b.r, width - b.r); }
    if (b.y < b.r || b.y > height - b.r) { b.vy *= -0.98; b.y = constrain(b.y, b.r, height - b.r); }
  }
  for (let i = 0; i < bodies.length; i++) for (let j = i + 1; j < bodies.length; j++) collide(bodies[i], bodies[j]);
  for (const b of bodies) {
    fill(0, 90);
    ellipse(b.x + 4, b.y + 5, 2 * b.r, 2 * b.r); // shadow
    stroke(255 - b.shade);
    strokeWeight(3);
    fill(b.shade);
    circle(b.x, b.y, 2 * b.r);
    noStroke();
  }
}

function collide(a, b) {
  const dx = b.x - a.x, dy = b.y - a.y;
  const d = Math.hypot(dx, dy), overlap = a.r + b.r - d;
  if (overlap <= 0 || d === 0) return;
  const nx = dx / d, ny = dy / d;
  const ma = a.r * a.r, mb = b.r * b.r;
  const rel = (a.vx - b.vx) * nx + (a.vy - b.vy) * ny;
  if (rel > 0) {
    const impulse = (2 * rel) / (ma + mb);
    a.vx -= impulse * mb * nx; a.vy -= impulse * mb * ny;
    b.vx += impulse * ma * nx; b.vy += impulse * ma * ny;
  }
  a.x -= nx * overlap * mb / (ma + mb); a.y -= ny * overlap * mb / (ma + mb);
  b.x += nx * overlap * ma / (ma + mb); b.y += ny * overlap * ma / (ma + mb);
}
