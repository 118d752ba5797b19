/* DEPTHWISE_CONV_2D with packed int4 filters: ek_conv_depthwise.c compiled with EK_CONV_S4
 * (see ek_conv_weights.h), its public kernels renamed _s4 (same contracts as the _s8 ones). */
#define EK_CONV_S4 1
/* the fast requantisation from a right shift of 1 (ek_conv_common.h) */
#define EK_REQUANT_SHORTEST 1
#define ek_depthwise_conv2d_s8 ek_depthwise_conv2d_s4
#define ek_depthwise_conv2d_s8_inplace ek_depthwise_conv2d_s4_inplace
#include "ek_conv_depthwise.c"
