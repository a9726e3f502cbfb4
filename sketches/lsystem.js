// L-system: the bracketed plant F -> F[+F]F[-F][F] expanded four times and drawn by a turtle.
// The branching angle breathes and the plants bend in the wind; three plants of different
// sizes and grays stand in a field, in front of a row of hills.

let sentence = 'F';

function setup() {
  createCanvas(256, 256);
  for (let i = 0; i < 4; i++) sentence = sentence.replace(/F/g, 'F[+F]F[-F][F]');
}

function draw() {
  const sky = drawingContext.createLinearGradient(0, 0, 0, 200);
  sky.addColorStop(0, '#5c5c5c');
  sky.addColorStop(1, '#e0e0e0');
  drawingContext.fillStyle = sky;
  drawingContext.fillRect(0, 0, width, height); // p5's rect() would use its own fill
  noStroke();
  fill(165);
  for (let x = 0; x < width; x += 64) ellipse(x + 32, 190, 120, 70);
  fill(110);
  rect(0, 205, width, 51);
  const t = frameCount * 0.04;
  plant(128, 252, 7, radians(24 + 6 * sin(t)), 0.012 * sin(t * 0.7), 15, 3);
  plant(45, 245, 4.5, radians(28 + 6 * sin(t + 1)), 0.016 * sin(t * 0.9 + 1), 80, 2);
  plant(212, 248, 5, radians(20 + 6 * sin(t + 2)), 0.014 * sin(t * 0.8 + 2), 250, 2);
}

// The turtle walks in plain JavaScript and strokes one path per plant: ~1000 segments per
// plant would be slow as separate line() calls.
function plant(x, y, step, angle, bend, shade, weight) {
  stroke(shade);
  strokeWeight(weight);
  const ctx = drawingContext;
  ctx.beginPath();
  const stack = [];
  let px = x, py = y, heading = -HALF_PI;
  for (const c of sentence) {
    if (c === 'F') {
      heading += bend; // wind bends every segment a little, so tips move most
      const nx = px + step * cos(heading), ny = py + step * sin(heading);
      ctx.moveTo(px, py);
      ctx.lineTo(nx, ny);
      px = nx;
      py = ny;
    } else if (c === '+') heading += angle;
    else if (c === '-') heading -= angle;
    else if (c === '[') stack.push([px, py, heading]);
    else if (c === ']') [px, py, heading] = stack.pop();
  }
  ctx.stroke();
}
