/* display/keymap.c: RFB key input to Linux input key codes.
 *
 * Two ways in: a KeyEvent carries an X keysym (what the key means in the client's layout), which
 * we map as if the client had a US keyboard; QEMU's extended key event also carries the XT scan
 * code (which key it is, layout-independent), which maps directly. Both end as KEY_* codes for
 * the virtio keyboard. Tables are indexed arrays: Latin-1 printable keysyms by code, the
 * 0xff00-0xffff function keysyms by their low byte.
 */
#include <linux/input-event-codes.h>
#include <rfb/keysym.h>

#include "common/vdi.h"
#include "display/internal.h"

/* Printable ASCII (0x20-0x7e) on a US keyboard; shifted symbols share their key. */
static const uint16_t ascii_keys[0x7f] = {
    [' '] = KEY_SPACE,      ['!'] = KEY_1,          ['"'] = KEY_APOSTROPHE, ['#'] = KEY_3,
    ['$'] = KEY_4,          ['%'] = KEY_5,          ['&'] = KEY_7,          ['\''] = KEY_APOSTROPHE,
    ['('] = KEY_9,          [')'] = KEY_0,          ['*'] = KEY_8,          ['+'] = KEY_EQUAL,
    [','] = KEY_COMMA,      ['-'] = KEY_MINUS,      ['.'] = KEY_DOT,        ['/'] = KEY_SLASH,
    ['0'] = KEY_0,          ['1'] = KEY_1,          ['2'] = KEY_2,          ['3'] = KEY_3,
    ['4'] = KEY_4,          ['5'] = KEY_5,          ['6'] = KEY_6,          ['7'] = KEY_7,
    ['8'] = KEY_8,          ['9'] = KEY_9,          [':'] = KEY_SEMICOLON,  [';'] = KEY_SEMICOLON,
    ['<'] = KEY_COMMA,      ['='] = KEY_EQUAL,      ['>'] = KEY_DOT,        ['?'] = KEY_SLASH,
    ['@'] = KEY_2,          ['A'] = KEY_A,          ['B'] = KEY_B,          ['C'] = KEY_C,
    ['D'] = KEY_D,          ['E'] = KEY_E,          ['F'] = KEY_F,          ['G'] = KEY_G,
    ['H'] = KEY_H,          ['I'] = KEY_I,          ['J'] = KEY_J,          ['K'] = KEY_K,
    ['L'] = KEY_L,          ['M'] = KEY_M,          ['N'] = KEY_N,          ['O'] = KEY_O,
    ['P'] = KEY_P,          ['Q'] = KEY_Q,          ['R'] = KEY_R,          ['S'] = KEY_S,
    ['T'] = KEY_T,          ['U'] = KEY_U,          ['V'] = KEY_V,          ['W'] = KEY_W,
    ['X'] = KEY_X,          ['Y'] = KEY_Y,          ['Z'] = KEY_Z,          ['['] = KEY_LEFTBRACE,
    ['\\'] = KEY_BACKSLASH, [']'] = KEY_RIGHTBRACE, ['^'] = KEY_6,          ['_'] = KEY_MINUS,
    ['`'] = KEY_GRAVE,      ['a'] = KEY_A,          ['b'] = KEY_B,          ['c'] = KEY_C,
    ['d'] = KEY_D,          ['e'] = KEY_E,          ['f'] = KEY_F,          ['g'] = KEY_G,
    ['h'] = KEY_H,          ['i'] = KEY_I,          ['j'] = KEY_J,          ['k'] = KEY_K,
    ['l'] = KEY_L,          ['m'] = KEY_M,          ['n'] = KEY_N,          ['o'] = KEY_O,
    ['p'] = KEY_P,          ['q'] = KEY_Q,          ['r'] = KEY_R,          ['s'] = KEY_S,
    ['t'] = KEY_T,          ['u'] = KEY_U,          ['v'] = KEY_V,          ['w'] = KEY_W,
    ['x'] = KEY_X,          ['y'] = KEY_Y,          ['z'] = KEY_Z,          ['{'] = KEY_LEFTBRACE,
    ['|'] = KEY_BACKSLASH,  ['}'] = KEY_RIGHTBRACE, ['~'] = KEY_GRAVE,
};

/* Function keysyms 0xff00-0xffff, indexed by the low byte. */
#define FK(sym) [(sym)&0xff]
static const uint16_t function_keys[0x100] = {
    FK(XK_BackSpace) = KEY_BACKSPACE,
    FK(XK_Tab) = KEY_TAB,
    FK(XK_Linefeed) = KEY_LINEFEED,
    FK(XK_Return) = KEY_ENTER,
    FK(XK_Pause) = KEY_PAUSE,
    FK(XK_Scroll_Lock) = KEY_SCROLLLOCK,
    FK(XK_Sys_Req) = KEY_SYSRQ,
    FK(XK_Escape) = KEY_ESC,
    FK(XK_Delete) = KEY_DELETE,
    /* navigation */
    FK(XK_Home) = KEY_HOME,
    FK(XK_Left) = KEY_LEFT,
    FK(XK_Up) = KEY_UP,
    FK(XK_Right) = KEY_RIGHT,
    FK(XK_Down) = KEY_DOWN,
    FK(XK_Page_Up) = KEY_PAGEUP,
    FK(XK_Page_Down) = KEY_PAGEDOWN,
    FK(XK_End) = KEY_END,
    /* misc */
    FK(XK_Select) = KEY_SELECT,
    FK(XK_Print) = KEY_SYSRQ,
    FK(XK_Execute) = KEY_OPEN,
    FK(XK_Insert) = KEY_INSERT,
    FK(XK_Undo) = KEY_UNDO,
    FK(XK_Redo) = KEY_REDO,
    FK(XK_Menu) = KEY_COMPOSE,
    FK(XK_Find) = KEY_FIND,
    FK(XK_Cancel) = KEY_CANCEL,
    FK(XK_Help) = KEY_HELP,
    FK(XK_Break) = KEY_PAUSE,
    FK(XK_Mode_switch) = KEY_RIGHTALT,
    FK(XK_Num_Lock) = KEY_NUMLOCK,
    /* keypad */
    FK(XK_KP_Space) = KEY_SPACE,
    FK(XK_KP_Tab) = KEY_TAB,
    FK(XK_KP_Enter) = KEY_KPENTER,
    FK(XK_KP_F1) = KEY_F1,
    FK(XK_KP_F2) = KEY_F2,
    FK(XK_KP_F3) = KEY_F3,
    FK(XK_KP_F4) = KEY_F4,
    FK(XK_KP_Home) = KEY_KP7,
    FK(XK_KP_Left) = KEY_KP4,
    FK(XK_KP_Up) = KEY_KP8,
    FK(XK_KP_Right) = KEY_KP6,
    FK(XK_KP_Down) = KEY_KP2,
    FK(XK_KP_Page_Up) = KEY_KP9,
    FK(XK_KP_Page_Down) = KEY_KP3,
    FK(XK_KP_End) = KEY_KP1,
    FK(XK_KP_Begin) = KEY_KP5,
    FK(XK_KP_Insert) = KEY_KP0,
    FK(XK_KP_Delete) = KEY_KPDOT,
    FK(XK_KP_Equal) = KEY_KPEQUAL,
    FK(XK_KP_Multiply) = KEY_KPASTERISK,
    FK(XK_KP_Add) = KEY_KPPLUS,
    FK(XK_KP_Separator) = KEY_KPCOMMA,
    FK(XK_KP_Subtract) = KEY_KPMINUS,
    FK(XK_KP_Decimal) = KEY_KPDOT,
    FK(XK_KP_Divide) = KEY_KPSLASH,
    FK(XK_KP_0) = KEY_KP0,
    FK(XK_KP_1) = KEY_KP1,
    FK(XK_KP_2) = KEY_KP2,
    FK(XK_KP_3) = KEY_KP3,
    FK(XK_KP_4) = KEY_KP4,
    FK(XK_KP_5) = KEY_KP5,
    FK(XK_KP_6) = KEY_KP6,
    FK(XK_KP_7) = KEY_KP7,
    FK(XK_KP_8) = KEY_KP8,
    FK(XK_KP_9) = KEY_KP9,
    /* function keys */
    FK(XK_F1) = KEY_F1,
    FK(XK_F2) = KEY_F2,
    FK(XK_F3) = KEY_F3,
    FK(XK_F4) = KEY_F4,
    FK(XK_F5) = KEY_F5,
    FK(XK_F6) = KEY_F6,
    FK(XK_F7) = KEY_F7,
    FK(XK_F8) = KEY_F8,
    FK(XK_F9) = KEY_F9,
    FK(XK_F10) = KEY_F10,
    FK(XK_F11) = KEY_F11,
    FK(XK_F12) = KEY_F12,
    FK(XK_F13) = KEY_F13,
    FK(XK_F14) = KEY_F14,
    FK(XK_F15) = KEY_F15,
    FK(XK_F16) = KEY_F16,
    FK(XK_F17) = KEY_F17,
    FK(XK_F18) = KEY_F18,
    FK(XK_F19) = KEY_F19,
    FK(XK_F20) = KEY_F20,
    FK(XK_F21) = KEY_F21,
    FK(XK_F22) = KEY_F22,
    FK(XK_F23) = KEY_F23,
    FK(XK_F24) = KEY_F24,
    /* modifiers */
    FK(XK_Shift_L) = KEY_LEFTSHIFT,
    FK(XK_Shift_R) = KEY_RIGHTSHIFT,
    FK(XK_Control_L) = KEY_LEFTCTRL,
    FK(XK_Control_R) = KEY_RIGHTCTRL,
    FK(XK_Caps_Lock) = KEY_CAPSLOCK,
    FK(XK_Shift_Lock) = KEY_CAPSLOCK,
    FK(XK_Meta_L) = KEY_LEFTMETA,
    FK(XK_Meta_R) = KEY_RIGHTMETA,
    FK(XK_Alt_L) = KEY_LEFTALT,
    FK(XK_Alt_R) = KEY_RIGHTALT,
    FK(XK_Super_L) = KEY_LEFTMETA,
    FK(XK_Super_R) = KEY_RIGHTMETA,
    FK(XK_Hyper_L) = KEY_LEFTMETA,
    FK(XK_Hyper_R) = KEY_RIGHTMETA,
};
#undef FK

/* XFree86 vendor keysyms (multimedia keys) that keyboards commonly have. */
static const struct {
    uint32_t keysym;
    uint16_t code;
} xf86_keys[] = {
    {0x1008ff11, KEY_VOLUMEDOWN}, {0x1008ff12, KEY_MUTE},     {0x1008ff13, KEY_VOLUMEUP},
    {0x1008ff14, KEY_PLAYPAUSE},  {0x1008ff15, KEY_STOPCD},   {0x1008ff16, KEY_PREVIOUSSONG},
    {0x1008ff17, KEY_NEXTSONG},   {0x1008ff18, KEY_HOMEPAGE}, {0x1008ff19, KEY_MAIL},
    {0x1008ff1d, KEY_CALC},       {0x1008ff26, KEY_BACK},     {0x1008ff27, KEY_FORWARD},
    {0x1008ff2a, KEY_POWER},      {0x1008ff2f, KEY_SLEEP},    {0x1008ff2b, KEY_WAKEUP},
};

uint16_t dpy__keysym_to_linux(uint32_t keysym)
{
    if (keysym < VDI_ARRAY_SIZE(ascii_keys))
        return ascii_keys[keysym];
    if (keysym >= 0xff00 && keysym <= 0xffff)
        return function_keys[keysym & 0xff];
    switch (keysym) {
    case XK_ISO_Left_Tab:
        return KEY_TAB;
    case XK_ISO_Level3_Shift:
        return KEY_RIGHTALT;
    }
    for (size_t i = 0; i < VDI_ARRAY_SIZE(xf86_keys); i++)
        if (xf86_keys[i].keysym == keysym)
            return xf86_keys[i].code;
    return 0;
}

/* XT set 1 codes beyond the ones Linux numbers identically (1-83), and the 0xE0-prefixed ones at
 * 0x80 | code. */
static const uint16_t xt_keys[0x100] = {
    [0x54] = KEY_SYSRQ, /* Alt+SysRq */
    [0x56] = KEY_102ND,
    [0x57] = KEY_F11,
    [0x58] = KEY_F12,
    [0x59] = KEY_KPEQUAL,
    [0x64] = KEY_F13,
    [0x65] = KEY_F14,
    [0x66] = KEY_F15,
    [0x67] = KEY_F16,
    [0x68] = KEY_F17,
    [0x69] = KEY_F18,
    [0x6a] = KEY_F19,
    [0x6b] = KEY_F20,
    [0x6c] = KEY_F21,
    [0x6d] = KEY_F22,
    [0x6e] = KEY_F23,
    [0x70] = KEY_KATAKANAHIRAGANA,
    [0x73] = KEY_RO,
    [0x76] = KEY_F24,
    [0x79] = KEY_HENKAN,
    [0x7b] = KEY_MUHENKAN,
    [0x7d] = KEY_YEN,
    [0x7e] = KEY_KPJPCOMMA,
    [0x80 | 0x10] = KEY_PREVIOUSSONG,
    [0x80 | 0x19] = KEY_NEXTSONG,
    [0x80 | 0x1c] = KEY_KPENTER,
    [0x80 | 0x1d] = KEY_RIGHTCTRL,
    [0x80 | 0x20] = KEY_MUTE,
    [0x80 | 0x21] = KEY_CALC,
    [0x80 | 0x22] = KEY_PLAYPAUSE,
    [0x80 | 0x24] = KEY_STOPCD,
    [0x80 | 0x2e] = KEY_VOLUMEDOWN,
    [0x80 | 0x30] = KEY_VOLUMEUP,
    [0x80 | 0x32] = KEY_HOMEPAGE,
    [0x80 | 0x35] = KEY_KPSLASH,
    [0x80 | 0x37] = KEY_SYSRQ,
    [0x80 | 0x38] = KEY_RIGHTALT,
    [0x80 | 0x46] = KEY_PAUSE, /* Ctrl+Break; noVNC sends it for Pause */
    [0x80 | 0x47] = KEY_HOME,
    [0x80 | 0x48] = KEY_UP,
    [0x80 | 0x49] = KEY_PAGEUP,
    [0x80 | 0x4b] = KEY_LEFT,
    [0x80 | 0x4d] = KEY_RIGHT,
    [0x80 | 0x4f] = KEY_END,
    [0x80 | 0x50] = KEY_DOWN,
    [0x80 | 0x51] = KEY_PAGEDOWN,
    [0x80 | 0x52] = KEY_INSERT,
    [0x80 | 0x53] = KEY_DELETE,
    [0x80 | 0x5b] = KEY_LEFTMETA,
    [0x80 | 0x5c] = KEY_RIGHTMETA,
    [0x80 | 0x5d] = KEY_COMPOSE,
    [0x80 | 0x5e] = KEY_POWER,
    [0x80 | 0x5f] = KEY_SLEEP,
    [0x80 | 0x63] = KEY_WAKEUP,
    [0x80 | 0x6c] = KEY_MAIL,
};

uint16_t dpy__xtkbd_to_linux(uint32_t keycode)
{
    /* RFB community spec, QEMU Extended Key Event: 0xE0-prefixed codes carry bit 7. Some
     * clients send the two bytes instead (0xe0XX); accept that too. */
    if ((keycode & 0xff00) == 0xe000 && keycode <= 0xe07f)
        keycode = 0x80 | (keycode & 0x7f);
    if (keycode == 0 || keycode > 0xff)
        return 0;
    if (keycode <= 0x53)
        return (uint16_t)keycode; /* Linux numbers these keys like XT set 1 */
    return xt_keys[keycode];
}
