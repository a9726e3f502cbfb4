// Spirograph: four hypotrochoids traced by pens on rolling gears. The pens draw continuously,
// the traces slowly fade, and the gears themselves are drawn as translucent discs.

const GEARS = [
  { R: 120, r: 45, d: 60, speed: 0.05, shade: 255, weight: 4 },
  { R: 120, r: 75, d: 40, speed: -0.04, shade: 0, weight: 5 },
  { R: 120, r: 33, d: 30, speed: 0.07, shade: 190, weight: 3 },
  { R: 110, r: 70, d: 65, speed: 0.03, shade: 40, weight: 3 },
];
let trace;

function setup() {
  createCanvas(256, 256);
  trace = createGraphics(256, 256);
  trace.background(90);
}

function draw() {
  trace.noStroke();
  trace.fill(90, 4);
  trace.rect(0, 0, width, height);
  for (const g of GEARS) {
    for (let sub = 0; sub < 8; sub++) {
      const t0 = (frameCount * 8 + sub) * g.speed;
      const t1 = t0 + g.speed;
      trace.stroke(g.shade);
      trace.strokeWeight(g.weight);
      trace.line(...pen(g, t0), ...pen(g, t1));
    }
  }
  image(trace, 0, 0);

  const t = frameCount * 8 * GEARS[0].speed;
  const k = GEARS[0].R - GEARS[0].r;
  noFill();
  stroke(220, 120);
  strokeWeight(2);
  circle(128, 128, 2 * GEARS[0].R);
  circle(128 + k * cos(t), 128 + k * sin(t), 2 * GEARS[0].r);
}

function pen({ R, r, d }, t) {
  const k = R - r;
  return [128 + k * cos(t) + d * cos((k / r) * t), 128 + k * sin(t) - d * sin((k / r) * t)];
}
