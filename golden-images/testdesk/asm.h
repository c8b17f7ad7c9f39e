/* golden-images/testdesk/asm.h: constants shared by boot.S and the C code. */
#ifndef TD_ASM_H
#define TD_ASM_H

#define TD_LAPIC_BASE  0xfee00000
#define TD_IOAPIC_BASE 0xfec00000
#define TD_TRAMPOLINE  0x8000

#endif
