// Plasma: the classic demoscene effect, a sum of moving sine fields, folded through a
// triangle wave so it shows banded contours of every gray level that flow and swirl.

const S = 96;
let buf;

function setup() {
  createCanvas(256, 256);
  buf = createGraphics(S, S);
  buf.pixelDensity(1);
}

function draw() {
  const t = millis() / 1000;
  buf.loadPixels();
  const px = buf.pixels;
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const u = x / S - 0.5, v = y / S - 0.5;
      let p = Math.sin(u * 10 + t) + Math.sin((v * 10 + t) / 2) + Math.sin((u * 10 + v * 10 + t) / 2);
      const cx = u + 0.5 * Math.sin(t / 5), cy = v + 0.5 * Math.cos(t / 3);
      p += Math.sin(Math.sqrt(100 * (cx * cx + cy * cy) + 1) + t);
      const band = Math.abs(((p * 1.5) % 2 + 2) % 2 - 1); // triangle wave in [0, 1]
      const i = 4 * (y * S + x);
      px[i] = px[i + 1] = px[i + 2] = 255 * band;
      px[i + 3] = 255;
    }
  }
  buf.updatePixels();
  image(buf, 0, 0, width, height);
}
