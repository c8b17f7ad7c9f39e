/* golden-images/testdesk/fb.c: the bochs-display device (PCI 1234:1111: BAR0 framebuffer, BAR2
 * MMIO with the EDID blob at 0 and the DISPI registers at 0x500) and the desktop drawn on it.
 *
 * Layout (W x H, 32 bpp XRGB), which tests rely on (docs/testdesk.md):
 *   rows 0..31            title bar (0x203060) with "TESTDESK" and the clock
 *   rows 32..32+(H-32)/2  eight colour bars, bar i over columns [i*W/8, (i+1)*W/8):
 *                         white, yellow, cyan, green, magenta, red, blue, black
 *   below                 grey (0x404040) with the key text line, a status line, the
 *                         network line and the agent's message (black on 0xffd000)
 *   anywhere              the pointer marker (orange 0xff8000 square, 9x9, black border)
 * With anim=P, the bottom P% of the rows change every frame. */
#include "golden-images/testdesk/desk.h"
#include "golden-images/testdesk/font.h"

#define DISPI_ID       0x0
#define DISPI_XRES     0x1
#define DISPI_YRES     0x2
#define DISPI_BPP      0x3
#define DISPI_ENABLE   0x4
#define DISPI_BANK     0x5
#define DISPI_VIRT_W   0x6
#define DISPI_VIRT_H   0x7
#define DISPI_X_OFF    0x8
#define DISPI_Y_OFF    0x9
#define DISPI_VMEM_64K 0xa
#define DISPI_ENABLED  0x01
#define DISPI_LFB      0x40

#define TITLE_H        32
#define SCALE          2
#define CELL_W         (6 * SCALE)
#define CELL_H         (9 * SCALE)
#define MARK           9
#define C_TITLE        0x203060
#define C_BG           0x404040
#define C_TEXT         0xffffff
#define C_MARK         0xff8000
#define C_MSG          0xffd000
#define KEYS_MAX       160

static const uint32_t bars[8] = {0xffffff, 0xffff00, 0x00ffff, 0x00ff00,
                                 0xff00ff, 0xff0000, 0x0000ff, 0x000000};

static uint32_t *fb;
static uint64_t mmio;
static uint32_t W, H;
static bool present;
static char keys[KEYS_MAX + 1];
static unsigned nkeys;
static uint32_t mx, my;
static bool mark_on;
static uint32_t under[MARK * MARK];
static unsigned anim_rows_drawn;
static char banner[41];   /* fits between "TESTDESK" and the clock at 1024 wide */
static char message[161]; /* the agent's message ("": none) */
static void draw_message(void);

bool td_fb_present(void)
{
    return present;
}

uint32_t td_fb_width(void)
{
    return present ? W : 0;
}

uint32_t td_fb_height(void)
{
    return present ? H : 0;
}

static uint16_t dispi_rd(unsigned reg)
{
    return rd16(mmio + 0x500 + reg * 2);
}

static void dispi_wr(unsigned reg, uint16_t v)
{
    wr16(mmio + 0x500 + reg * 2, v);
}

/* The preferred mode: the first detailed timing descriptor of the EDID base block. */
static bool edid_mode(uint32_t *w, uint32_t *h)
{
    static const uint8_t magic[8] = {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0};
    uint8_t e[128];
    uint8_t sum = 0;
    for (unsigned i = 0; i < 128; i++) {
        e[i] = rd8(mmio + i);
        sum += e[i];
    }
    if (memcmp(e, magic, 8) || sum)
        return false;
    const uint8_t *d = e + 54;
    if (!d[0] && !d[1]) /* pixel clock 0: not a timing */
        return false;
    *w = d[2] | (uint32_t)(d[4] >> 4) << 8;
    *h = d[5] | (uint32_t)(d[7] >> 4) << 8;
    return *w && *h;
}

void td_fb_probe(const struct td_pci_dev *d)
{
    if (present) {
        td_printf("testdesk: display %02x:%02x.%x not used (have one)\n", d->bus, d->dev, d->fn);
        return;
    }
    if (!d->bar[0] || d->bar_io[0] || !d->bar[2] || d->bar_io[2] || d->bar_size[2] < 0x600) {
        td_printf("TESTDESK FAIL display %02x:%02x.%x needs BAR0 (memory) and BAR2 (MMIO)\n",
                  d->bus, d->dev, d->fn);
        return;
    }
    mmio = d->bar[2];
    if (!td_map(mmio, 0x1000)) {
        td_printf("TESTDESK FAIL display MMIO BAR at 0x%lx not mappable\n", mmio);
        return;
    }
    uint16_t id = dispi_rd(DISPI_ID);
    if (id < 0xb0c0 || id > 0xb0cf) {
        td_printf("TESTDESK FAIL display DISPI id 0x%04x is not a bochs VBE\n", id);
        return;
    }
    uint32_t w = 1024, h = 768;
    bool from_edid = edid_mode(&w, &h);
    uint64_t vram = (uint64_t)dispi_rd(DISPI_VMEM_64K) * 65536;
    if (!vram || vram > d->bar_size[0])
        vram = d->bar_size[0];
    if (w > 4096 || h > 4096 || (uint64_t)w * h * 4 > vram) {
        td_printf("testdesk: display: EDID mode %ux%u does not fit %lu bytes, using 1024x768\n", w,
                  h, vram);
        w = 1024;
        h = 768;
    }
    if (!td_map(d->bar[0], (uint64_t)w * h * 4)) {
        td_printf("TESTDESK FAIL display framebuffer at 0x%lx not mappable\n", d->bar[0]);
        return;
    }
    /* The sequence Linux's bochs driver uses: disable, program, enable with the linear FB. */
    dispi_wr(DISPI_ENABLE, 0);
    dispi_wr(DISPI_BPP, 32);
    dispi_wr(DISPI_XRES, (uint16_t)w);
    dispi_wr(DISPI_YRES, (uint16_t)h);
    dispi_wr(DISPI_BANK, 0);
    dispi_wr(DISPI_VIRT_W, (uint16_t)w);
    dispi_wr(DISPI_VIRT_H, (uint16_t)h);
    dispi_wr(DISPI_X_OFF, 0);
    dispi_wr(DISPI_Y_OFF, 0);
    dispi_wr(DISPI_ENABLE, DISPI_ENABLED | DISPI_LFB);
    if ((d->class_rev >> 8) == 0x030000) { /* the VGA flavour (QEMU -vga std): unblank */
        (void)rd8(mmio + 0x400 + 0x1a);    /* input status 1 resets the attribute flip-flop */
        wr8(mmio + 0x400, 0x20);
    }
    if (dispi_rd(DISPI_XRES) != w || dispi_rd(DISPI_YRES) != h || dispi_rd(DISPI_BPP) != 32) {
        td_printf("TESTDESK FAIL display mode %ux%ux32 not taken (reads %ux%ux%u)\n", w, h,
                  dispi_rd(DISPI_XRES), dispi_rd(DISPI_YRES), dispi_rd(DISPI_BPP));
        return;
    }
    fb = (uint32_t *)d->bar[0];
    W = w;
    H = h;
    present = true;
    mx = W / 2;
    my = H / 2;
    td_printf("testdesk: display %ux%u (%s) vram %lu KiB fb 0x%lx\n", w, h,
              from_edid ? "EDID preferred mode" : "default mode", vram >> 10, d->bar[0]);
}

static void rect(uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t c)
{
    if (x >= W || y >= H)
        return;
    if (w > W - x)
        w = W - x;
    if (h > H - y)
        h = H - y;
    for (uint32_t j = 0; j < h; j++) {
        uint32_t *p = fb + (uint64_t)(y + j) * W + x;
        for (uint32_t i = 0; i < w; i++)
            p[i] = c;
    }
}

static void text(uint32_t x, uint32_t y, const char *s, uint32_t fg, uint32_t bg)
{
    for (; *s && x + CELL_W <= W; s++, x += CELL_W) {
        const uint8_t *g = td_font_glyph(*s);
        rect(x, y, CELL_W, CELL_H, bg);
        for (unsigned r = 0; r < TD_FONT_H; r++)
            for (unsigned c = 0; c < TD_FONT_W; c++)
                if (g[r] & (0x10 >> c))
                    rect(x + SCALE + c * SCALE, y + SCALE + r * SCALE, SCALE, SCALE, fg);
    }
}

static uint32_t bars_end(void)
{
    return TITLE_H + (H - TITLE_H) / 2;
}

static uint32_t keys_y(void)
{
    return bars_end() + 16;
}

/* The marker saves what it covers, so moving it restores the desktop under it. */
static void mark_hide(void)
{
    if (!mark_on)
        return;
    for (unsigned j = 0; j < MARK; j++)
        for (unsigned i = 0; i < MARK; i++)
            if (mx + i < W && my + j < H)
                fb[(uint64_t)(my + j) * W + mx + i] = under[j * MARK + i];
    mark_on = false;
}

static void mark_show(void)
{
    for (unsigned j = 0; j < MARK; j++)
        for (unsigned i = 0; i < MARK; i++)
            if (mx + i < W && my + j < H) {
                uint32_t *p = &fb[(uint64_t)(my + j) * W + mx + i];
                under[j * MARK + i] = *p;
                bool edge = !i || !j || i == MARK - 1 || j == MARK - 1;
                *p = edge ? 0x000000 : C_MARK;
            }
    mark_on = true;
}

static void draw_keys(void)
{
    char line[KEYS_MAX + 8];
    unsigned cols = W / CELL_W;
    unsigned room = cols > 8 ? cols - 8 : 0;
    const char *k = keys;
    if (nkeys > room)
        k += nkeys - room;
    td_snprintf(line, sizeof(line), "KEYS: %s", k);
    bool had = mark_on;
    mark_hide();
    rect(0, keys_y(), W, CELL_H, C_BG);
    text(8, keys_y(), line, C_TEXT, C_BG);
    if (had)
        mark_show();
}

void td_fb_banner(const char *t)
{
    size_t n = 0;
    for (; t[n] && n < sizeof(banner) - 1; n++)
        banner[n] = (t[n] >= 0x20 && t[n] < 0x7f) ? t[n] : '?';
    banner[n] = 0;
}

void td_fb_draw_desktop(void)
{
    if (!present)
        return;
    mark_on = false;
    rect(0, 0, W, TITLE_H, C_TITLE);
    text(8, (TITLE_H - CELL_H) / 2, "TESTDESK", C_TEXT, C_TITLE);
    if (banner[0])
        text(8 + 10 * CELL_W, (TITLE_H - CELL_H) / 2, banner, C_TEXT, C_TITLE);
    for (unsigned i = 0; i < 8; i++)
        rect(i * W / 8, TITLE_H, (i + 1) * W / 8 - i * W / 8, bars_end() - TITLE_H, bars[i]);
    rect(0, bars_end(), W, H - bars_end(), C_BG);
    char status[96];
    td_snprintf(status, sizeof(status), "%ux%u  DISKS %u  KBD %s  TABLET %s  RNG %s", W, H,
                td_blk_count(), td_have_keyboard() ? "Y" : "N", td_have_tablet() ? "Y" : "N",
                td_have_rng() ? "Y" : "N");
    text(8, keys_y() + 2 * CELL_H, status, C_TEXT, C_BG);
    draw_keys();
    if (message[0])
        draw_message();
    anim_rows_drawn = 0;
    mark_show();
}

/* The agent's message: a yellow band two lines under the network line ("" clears it). */
static void draw_message(void)
{
    uint32_t y = keys_y() + 6 * CELL_H;
    if (y + CELL_H + 4 > H)
        return;
    bool had = mark_on;
    mark_hide();
    rect(0, y - 2, W, CELL_H + 4, message[0] ? C_MSG : C_BG);
    if (message[0])
        text(8, y, message, 0x000000, C_MSG);
    if (had)
        mark_show();
}

void td_fb_message(const char *t)
{
    size_t n = 0;
    for (; t[n] && n < sizeof(message) - 1; n++)
        message[n] = (t[n] >= 0x20 && t[n] < 0x7f) ? t[n] : '?';
    message[n] = 0;
    if (present)
        draw_message();
}

void td_fb_net(const char *line)
{
    if (!present)
        return;
    bool had = mark_on;
    mark_hide();
    rect(0, keys_y() + 4 * CELL_H, W, CELL_H, C_BG);
    text(8, keys_y() + 4 * CELL_H, line, C_TEXT, C_BG);
    if (had)
        mark_show();
}

/* Linux key codes (US layout) to characters; 0 for keys without one. */
static char key_char(unsigned code, bool shift)
{
    static const char plain[] = "\0\0001234567890-=\0\0qwertyuiop[]\0\0asdfghjkl;'`\0\\zxcvbnm,./";
    static const char shifted[] = "\0\0!@#$%^&*()_+\0\0QWERTYUIOP{}\0\0ASDFGHJKL:\"~\0|ZXCVBNM<>?";
    if (code == 57)
        return ' ';
    if (code < sizeof(plain) - 1)
        return shift ? shifted[code] : plain[code];
    return 0;
}

void td_fb_key(unsigned code, bool shift)
{
    char c = key_char(code, shift);
    char tmp[12];
    if (c)
        td_snprintf(tmp, sizeof(tmp), "%c", c);
    else
        td_snprintf(tmp, sizeof(tmp), "<%u>", code);
    size_t n = strlen(tmp);
    if (nkeys + n > KEYS_MAX) { /* keep the newest half */
        memmove(keys, keys + KEYS_MAX / 2, nkeys - KEYS_MAX / 2);
        nkeys -= KEYS_MAX / 2;
    }
    memcpy(keys + nkeys, tmp, n);
    nkeys += (unsigned)n;
    keys[nkeys] = 0;
    if (present)
        draw_keys();
}

void td_fb_pointer(uint32_t x, uint32_t y)
{
    if (!present)
        return;
    mark_hide();
    mx = x < W ? x : W - 1;
    my = y < H ? y : H - 1;
    mark_show();
}

void td_fb_clock(uint32_t secs)
{
    if (!present)
        return;
    char t[16];
    td_snprintf(t, sizeof(t), "%02u:%02u:%02u", secs / 3600 % 24, secs / 60 % 60, secs % 60);
    uint32_t x = W > 8 * CELL_W + 8 ? W - 8 * CELL_W - 8 : 0;
    bool had = mark_on && my < TITLE_H + MARK;
    if (had)
        mark_hide();
    text(x, (TITLE_H - CELL_H) / 2, t, C_TEXT, C_TITLE);
    if (had)
        mark_show();
}

/* Every pixel of the bottom @percent of the rows changes from one frame to the next. */
void td_fb_anim_frame(unsigned percent, uint64_t frame)
{
    if (!present)
        return;
    uint32_t rows = (uint32_t)((uint64_t)H * percent / 100);
    if (rows < anim_rows_drawn) { /* the band shrank: put the desktop back */
        td_fb_draw_desktop();
    }
    mark_hide();
    for (uint32_t y = H - rows; y < H; y++) {
        uint32_t v = (uint32_t)((frame * 37 + y) & 0xff);
        uint32_t c = v << 16 | (255 - v) << 8 | ((v * 3) & 0xff);
        uint32_t *p = fb + (uint64_t)y * W;
        for (uint32_t x = 0; x < W; x++)
            p[x] = c ^ (x & 0x3f);
    }
    anim_rows_drawn = rows;
    mark_show();
}
