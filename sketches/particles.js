// Particles: four fountains shoot sparks that arc under gravity, bounce off the floor and fade,
// in front of a banded backdrop that scrolls slowly.

let sparks = [];

function setup() {
  createCanvas(256, 256);
}

function draw() {
  noStroke();
  for (let y = 0; y < height; y += 16) {
    fill(40 + 30 * sin(y * 0.05 + frameCount * 0.03) + 30);
    rect(0, y, width, 16);
  }

  for (let f = 0; f < 4; f++) {
    const x = 32 + f * 64;
    const aim = sin(frameCount * 0.05 + f) * 1.2;
    for (let k = 0; k < 3; k++) {
      sparks.push({ x, y: height - 8, vx: aim + random(-0.8, 0.8), vy: random(-7.5, -4), life: 255, size: random(3, 9) });
    }
  }

  for (const s of sparks) {
    s.vy += 0.15;
    s.x += s.vx;
    s.y += s.vy;
    if (s.y > height - 4) {
      s.y = height - 4;
      s.vy *= -0.6;
    }
    s.life -= 2.2;
    fill(255, s.life);
    circle(s.x, s.y, s.size);
    fill(0, s.life * 0.6);
    circle(s.x + 2, s.y + 2, s.size * 0.5);
  }
  sparks = sparks.filter((s) => s.life > 0 && s.x > -10 && s.x < width + 10);
}
