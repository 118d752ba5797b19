/* CONV_2D and FULLY_CONNECTED with packed int4 filters: ek_conv.c compiled with EK_CONV_S4
 * (see ek_conv_weights.h), its public kernels renamed _s4. Same semantics, same in-place
 * contracts, same argument order as the _s8 kernels (ek_conv.h). */
#define EK_CONV_S4 1
/* the fast requantisation from a right shift of 1 (ek_conv_common.h) */
#define EK_REQUANT_SHORTEST 1
#define ek_conv2d_s8 ek_conv2d_s4
#define ek_conv2d_add_s8 ek_conv2d_add_s4
#define ek_conv2d_s8_pointwise_inplace ek_conv2d_s4_pointwise_inplace
#define ek_conv2d_s8_pointwise_inplace_backward ek_conv2d_s4_pointwise_inplace_backward
#define ek_fully_connected_s8 ek_fully_connected_s4
#include "ek_conv.c"
