/* tests/unit/display/test_keymap.c: keysyms and XT scan codes to Linux key codes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <linux/input-event-codes.h>
#include <rfb/keysym.h>

#include "common/vdi.h"
#include "display/internal.h"

static void test_every_printable_ascii_has_a_key(void **state)
{
    (void)state;
    for (uint32_t c = 0x20; c <= 0x7e; c++)
        assert_int_not_equal(dpy__keysym_to_linux(c), 0);
}

static void test_letters_digits_and_shifted_symbols(void **state)
{
    (void)state;
    assert_int_equal(dpy__keysym_to_linux('a'), KEY_A);
    assert_int_equal(dpy__keysym_to_linux('A'), KEY_A);
    assert_int_equal(dpy__keysym_to_linux('z'), KEY_Z);
    assert_int_equal(dpy__keysym_to_linux('0'), KEY_0);
    assert_int_equal(dpy__keysym_to_linux('1'), KEY_1);
    assert_int_equal(dpy__keysym_to_linux('!'), KEY_1);
    assert_int_equal(dpy__keysym_to_linux('@'), KEY_2);
    assert_int_equal(dpy__keysym_to_linux('('), KEY_9);
    assert_int_equal(dpy__keysym_to_linux(')'), KEY_0);
    assert_int_equal(dpy__keysym_to_linux('_'), KEY_MINUS);
    assert_int_equal(dpy__keysym_to_linux('+'), KEY_EQUAL);
    assert_int_equal(dpy__keysym_to_linux('{'), KEY_LEFTBRACE);
    assert_int_equal(dpy__keysym_to_linux('|'), KEY_BACKSLASH);
    assert_int_equal(dpy__keysym_to_linux(':'), KEY_SEMICOLON);
    assert_int_equal(dpy__keysym_to_linux('"'), KEY_APOSTROPHE);
    assert_int_equal(dpy__keysym_to_linux('~'), KEY_GRAVE);
    assert_int_equal(dpy__keysym_to_linux('<'), KEY_COMMA);
    assert_int_equal(dpy__keysym_to_linux('?'), KEY_SLASH);
    assert_int_equal(dpy__keysym_to_linux(' '), KEY_SPACE);
}

static void test_modifiers(void **state)
{
    (void)state;
    assert_int_equal(dpy__keysym_to_linux(XK_Shift_L), KEY_LEFTSHIFT);
    assert_int_equal(dpy__keysym_to_linux(XK_Shift_R), KEY_RIGHTSHIFT);
    assert_int_equal(dpy__keysym_to_linux(XK_Control_L), KEY_LEFTCTRL);
    assert_int_equal(dpy__keysym_to_linux(XK_Control_R), KEY_RIGHTCTRL);
    assert_int_equal(dpy__keysym_to_linux(XK_Alt_L), KEY_LEFTALT);
    assert_int_equal(dpy__keysym_to_linux(XK_Alt_R), KEY_RIGHTALT);
    assert_int_equal(dpy__keysym_to_linux(XK_ISO_Level3_Shift), KEY_RIGHTALT);
    assert_int_equal(dpy__keysym_to_linux(XK_Super_L), KEY_LEFTMETA);
    assert_int_equal(dpy__keysym_to_linux(XK_Super_R), KEY_RIGHTMETA);
    assert_int_equal(dpy__keysym_to_linux(XK_Meta_L), KEY_LEFTMETA);
    assert_int_equal(dpy__keysym_to_linux(XK_Caps_Lock), KEY_CAPSLOCK);
    assert_int_equal(dpy__keysym_to_linux(XK_Num_Lock), KEY_NUMLOCK);
    assert_int_equal(dpy__keysym_to_linux(XK_Scroll_Lock), KEY_SCROLLLOCK);
}

static void test_function_and_editing_keys(void **state)
{
    (void)state;
    static const uint16_t f[24] = {KEY_F1,  KEY_F2,  KEY_F3,  KEY_F4,  KEY_F5,  KEY_F6,
                                   KEY_F7,  KEY_F8,  KEY_F9,  KEY_F10, KEY_F11, KEY_F12,
                                   KEY_F13, KEY_F14, KEY_F15, KEY_F16, KEY_F17, KEY_F18,
                                   KEY_F19, KEY_F20, KEY_F21, KEY_F22, KEY_F23, KEY_F24};
    for (int i = 0; i < 24; i++)
        assert_int_equal(dpy__keysym_to_linux(XK_F1 + (uint32_t)i), f[i]);
    assert_int_equal(dpy__keysym_to_linux(XK_Escape), KEY_ESC);
    assert_int_equal(dpy__keysym_to_linux(XK_Tab), KEY_TAB);
    assert_int_equal(dpy__keysym_to_linux(XK_ISO_Left_Tab), KEY_TAB);
    assert_int_equal(dpy__keysym_to_linux(XK_BackSpace), KEY_BACKSPACE);
    assert_int_equal(dpy__keysym_to_linux(XK_Return), KEY_ENTER);
    assert_int_equal(dpy__keysym_to_linux(XK_Print), KEY_SYSRQ);
    assert_int_equal(dpy__keysym_to_linux(XK_Pause), KEY_PAUSE);
    assert_int_equal(dpy__keysym_to_linux(XK_Menu), KEY_COMPOSE);
}

static void test_navigation(void **state)
{
    (void)state;
    assert_int_equal(dpy__keysym_to_linux(XK_Insert), KEY_INSERT);
    assert_int_equal(dpy__keysym_to_linux(XK_Delete), KEY_DELETE);
    assert_int_equal(dpy__keysym_to_linux(XK_Home), KEY_HOME);
    assert_int_equal(dpy__keysym_to_linux(XK_End), KEY_END);
    assert_int_equal(dpy__keysym_to_linux(XK_Page_Up), KEY_PAGEUP);
    assert_int_equal(dpy__keysym_to_linux(XK_Page_Down), KEY_PAGEDOWN);
    assert_int_equal(dpy__keysym_to_linux(XK_Left), KEY_LEFT);
    assert_int_equal(dpy__keysym_to_linux(XK_Right), KEY_RIGHT);
    assert_int_equal(dpy__keysym_to_linux(XK_Up), KEY_UP);
    assert_int_equal(dpy__keysym_to_linux(XK_Down), KEY_DOWN);
}

static void test_keypad(void **state)
{
    (void)state;
    static const uint16_t digits[10] = {KEY_KP0, KEY_KP1, KEY_KP2, KEY_KP3, KEY_KP4,
                                        KEY_KP5, KEY_KP6, KEY_KP7, KEY_KP8, KEY_KP9};
    for (int i = 0; i < 10; i++)
        assert_int_equal(dpy__keysym_to_linux(XK_KP_0 + (uint32_t)i), digits[i]);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Enter), KEY_KPENTER);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Add), KEY_KPPLUS);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Subtract), KEY_KPMINUS);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Multiply), KEY_KPASTERISK);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Divide), KEY_KPSLASH);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Decimal), KEY_KPDOT);
    /* NumLock off: the keypad's navigation keysyms still come from the keypad keys */
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Home), KEY_KP7);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Up), KEY_KP8);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Page_Down), KEY_KP3);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Insert), KEY_KP0);
    assert_int_equal(dpy__keysym_to_linux(XK_KP_Delete), KEY_KPDOT);
}

static void test_unknown_keysyms(void **state)
{
    (void)state;
    assert_int_equal(dpy__keysym_to_linux(0), 0);
    assert_int_equal(dpy__keysym_to_linux(0x1f), 0);
    assert_int_equal(dpy__keysym_to_linux(0x7f), 0);
    assert_int_equal(dpy__keysym_to_linux(0xe9), 0); /* eacute: not on a US keyboard */
    assert_int_equal(dpy__keysym_to_linux(0xffffffff), 0);
    assert_int_equal(dpy__keysym_to_linux(0xff00), 0);
    assert_int_equal(dpy__keysym_to_linux(0x1008ff12), KEY_MUTE);
}

static void test_xt_codes(void **state)
{
    (void)state;
    assert_int_equal(dpy__xtkbd_to_linux(0x01), KEY_ESC);
    assert_int_equal(dpy__xtkbd_to_linux(0x1e), KEY_A);
    assert_int_equal(dpy__xtkbd_to_linux(0x2a), KEY_LEFTSHIFT);
    assert_int_equal(dpy__xtkbd_to_linux(0x3b), KEY_F1);
    assert_int_equal(dpy__xtkbd_to_linux(0x53), KEY_KPDOT);
    assert_int_equal(dpy__xtkbd_to_linux(0x56), KEY_102ND);
    assert_int_equal(dpy__xtkbd_to_linux(0x57), KEY_F11);
    assert_int_equal(dpy__xtkbd_to_linux(0x58), KEY_F12);
    assert_int_equal(dpy__xtkbd_to_linux(0x9c), KEY_KPENTER);
    assert_int_equal(dpy__xtkbd_to_linux(0x9d), KEY_RIGHTCTRL);
    assert_int_equal(dpy__xtkbd_to_linux(0xb8), KEY_RIGHTALT);
    assert_int_equal(dpy__xtkbd_to_linux(0xc8), KEY_UP);
    assert_int_equal(dpy__xtkbd_to_linux(0xd3), KEY_DELETE);
    assert_int_equal(dpy__xtkbd_to_linux(0xdb), KEY_LEFTMETA);
    assert_int_equal(dpy__xtkbd_to_linux(0xe01d), KEY_RIGHTCTRL); /* two-byte spelling */
    assert_int_equal(dpy__xtkbd_to_linux(0), 0);
    assert_int_equal(dpy__xtkbd_to_linux(0x55), 0);
    assert_int_equal(dpy__xtkbd_to_linux(0x100), 0);
    assert_int_equal(dpy__xtkbd_to_linux(0xffffffff), 0);
    /* every code maps inside the key range */
    for (uint32_t k = 0; k < 0x100; k++)
        assert_true(dpy__xtkbd_to_linux(k) < KEY_CNT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_printable_ascii_has_a_key),
        cmocka_unit_test(test_letters_digits_and_shifted_symbols),
        cmocka_unit_test(test_modifiers),
        cmocka_unit_test(test_function_and_editing_keys),
        cmocka_unit_test(test_navigation),
        cmocka_unit_test(test_keypad),
        cmocka_unit_test(test_unknown_keysyms),
        cmocka_unit_test(test_xt_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
