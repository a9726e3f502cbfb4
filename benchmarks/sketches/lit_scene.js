// A heavier 720x720 WEBGL scene with lights, for the capture benchmark: a sphere and a box, specular.
function setup() {
  createCanvas(720, 720, WEBGL);
}

function draw() {
  background(40);
  ambientLight(60);
  directionalLight(255, 255, 255, 0.3, 0.6, -1);
  pointLight(200, 200, 200, 200, -200, 300);
  rotateX(frameCount * 0.03);
  rotateY(frameCount * 0.02);
  noStroke();
  specularMaterial(220);
  sphere(150, 32, 24);
  translate(180, 0, 0);
  box(90);
}
