/* ref_layer.c - host reference of the three layers: conv2d, the layer
 * forward passes with their running statistics. */
#include "ref.h"
