// A 720x720 WEBGL sketch with lights, for the capture benchmark: a turning sphere under three lights.
function setup() {
  createCanvas(720, 720, WEBGL);
}

function draw() {
  background(40);
  ambientLight(60);
  directionalLight(255, 255, 255, 0.3, 0.6, -1);
  pointLight(200, 200, 200, 200, -200, 300);
  rotateY(frameCount * 0.02);
  noStroke();
  specularMaterial(220);
  sphere(150, 32, 24);
}
