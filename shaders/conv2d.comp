#version 450
// Placeholder until the kernels are written: the backend's supports() says no.
layout(local_size_x = 1) in;
void main() {}
