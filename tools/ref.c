/* ref.c - host reference of the primitives: block clamping, patch sampling,
 * mean and covariance, Newton-Schulz inverse square root. */
#include "ref.h"
