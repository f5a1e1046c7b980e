#version 450
// placeholder: replaced by the real kernel
layout(local_size_x = 1) in;
void main() {}
