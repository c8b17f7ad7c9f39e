/* golden-images/testdesk/font.h: the built-in 5x7 font. */
#ifndef TD_FONT_INCLUDED
#define TD_FONT_INCLUDED

#include <stdint.h>

#define TD_FONT_W 5
#define TD_FONT_H 7
/* Seven rows for @c (bit 4 = leftmost pixel); never NULL. */
const uint8_t *td_font_glyph(char c);

#endif
