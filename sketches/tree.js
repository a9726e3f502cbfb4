// Recursive tree: a fractal tree grows from a seedling, its branches swaying in a gusty wind,
// under a sky gradient with drifting horizontal clouds. It regrows every 300 frames.

function setup() {
  createCanvas(256, 256);
}

function draw() {
  const sky = drawingContext.createLinearGradient(0, 0, 0, height);
  sky.addColorStop(0, '#e6e6e6');
  sky.addColorStop(1, '#6e6e6e');
  drawingContext.fillStyle = sky;
  drawingContext.fillRect(0, 0, width, height); // p5's rect() would use its own fill
  noStroke();
  for (let c = 0; c < 5; c++) {
    fill(255, 110);
    const x = ((frameCount * (0.4 + c * 0.15) + c * 70) % (width + 120)) - 60;
    ellipse(x, 30 + c * 22, 90, 14);
  }
  fill(30);
  rect(0, height - 20, width, 20);

  const growth = min(1, (frameCount % 300) / 200);
  const wind = 0.12 * sin(frameCount * 0.05) + 0.05 * sin(frameCount * 0.13);
  translate(width / 2, height - 20);
  branch(70 * growth, 9, wind);
}

function branch(len, depth, wind) {
  if (depth === 0 || len < 2) return;
  stroke(20 + (9 - depth) * 18);
  strokeWeight(depth * 1.3);
  line(0, 0, 0, -len);
  translate(0, -len);
  for (const side of [-1, 1]) {
    push();
    rotate(side * (0.42 + 0.08 * depth / 9) + wind * (10 - depth) * 0.3);
    branch(len * 0.72, depth - 1, wind);
    pop();
  }
}
