// Noise flow field: 900 particles follow the angle of a slowly drifting Perlin noise field and
// leave fading gray trails, so the whole canvas fills with streamlines that evolve over time.

let particles = [];

function setup() {
  createCanvas(256, 256);
  background(128);
  for (let i = 0; i < 900; i++) particles.push(spawn());
}

function spawn() {
  return { x: random(width), y: random(height), life: random(60, 200), shade: random() < 0.5 ? 15 : 240 };
}

function draw() {
  noStroke();
  fill(128, 18); // slow fade back to mid gray keeps trails long but not permanent
  rect(0, 0, width, height);
  const z = frameCount * 0.004;
  strokeWeight(2);
  for (const p of particles) {
    const a = noise(p.x * 0.01, p.y * 0.01, z) * TWO_PI * 2;
    const nx = p.x + 1.6 * cos(a);
    const ny = p.y + 1.6 * sin(a);
    stroke(p.shade, 150);
    line(p.x, p.y, nx, ny);
    p.x = nx;
    p.y = ny;
    p.life -= 1;
    if (p.life < 0 || p.x < 0 || p.x > width || p.y < 0 || p.y > height) Object.assign(p, spawn());
  }
}
