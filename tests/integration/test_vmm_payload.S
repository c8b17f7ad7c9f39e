/* tests/integration/test_vmm_payload.S: a tiny PVH guest for vdi-vmm's integration suites (the
 * suites assemble it with `as --32` and link it at 1 MiB). It prints its command line and the
 * hvm_start_info memory map on COM1, then acts on the first letter of the command line:
 *   p  power off through ACPI (PM1a_CNT: SLP_TYP 5 | SLP_EN)     r  reset through the i8042
 *   t  triple fault (no IDT, then ud2)                            h  halt with interrupts off
 *   u  hammer an unknown port and unassigned MMIO, then power off
 *   l  print "PAYLOAD tick N" forever (for pause/resume)
 *   c  print the CMOS clock (YYMMDDHHMM, BCD) and the i8042 self-test answer, then power off
 *   b  enable the ACPI power button, poll for it, then power off   anything else: power off */
        .code32
        .section .note.pvh, "a"
        .p2align 2
        .long 4, 4, 18          /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long _start
        .text
        .globl _start
_start:
        mov $0x80000, %esp              /* PVH gives no stack */
        mov %ebx, %ebp                  /* hvm_start_info */
        mov $hello, %esi
        call puts
        mov 24(%ebp), %esi              /* cmdline_paddr */
        mov %esi, %edi
        call puts
        mov $nl, %esi
        call puts
        mov 40(%ebp), %esi              /* memmap_paddr */
        mov 48(%ebp), %ecx              /* memmap_entries */
1:      test %ecx, %ecx
        jz 2f
        push %ecx
        push %esi
        mov $e820, %esi
        call puts
        pop %esi
        mov 4(%esi), %eax
        call puthex
        mov 0(%esi), %eax
        call puthex
        call putc_sp
        mov 12(%esi), %eax
        call puthex
        mov 8(%esi), %eax
        call puthex
        call putc_sp
        mov 16(%esi), %eax
        call puthex
        push %esi
        mov $nl, %esi
        call puts
        pop %esi
        add $24, %esi
        pop %ecx
        dec %ecx
        jmp 1b
2:      movzbl (%edi), %eax
        cmp $'p', %al
        je poweroff
        cmp $'r', %al
        je reboot
        cmp $'t', %al
        je triple
        cmp $'l', %al
        je loop
        cmp $'u', %al
        je unknown
        cmp $'h', %al
        je halt
        cmp $'c', %al
        je clock
        cmp $'b', %al
        je button
        jmp poweroff

poweroff:
        mov $0x604, %dx
        mov $((5 << 10) | (1 << 13)), %ax
        out %ax, %dx
        jmp halt
reboot:
        mov $0x64, %dx
        mov $0xfe, %al
        out %al, %dx
        jmp halt
triple:
        lidt nullidt
        ud2
unknown:
        mov $1000, %ecx
3:      mov $0x1234, %dx
        out %al, %dx
        in %dx, %al
        movl $1, 0xd0000000
        mov 0xd0000000, %eax
        dec %ecx
        jnz 3b
        mov $survived, %esi
        call puts
        jmp poweroff
loop:
        xor %edi, %edi
4:      mov $tick, %esi
        call puts
        mov %edi, %eax
        call puthex
        mov $nl, %esi
        call puts
        inc %edi
        mov $20000, %ecx
5:      dec %ecx
        jnz 5b
        jmp 4b
clock:                                  /* "PAYLOAD rtc YYMMDDHHMM i8042=55" */
        mov $rtc, %esi
        call puts
        mov $0x09, %al
        call cmos
        mov $0x08, %al
        call cmos
        mov $0x07, %al
        call cmos
        mov $0x04, %al
        call cmos
        mov $0x02, %al
        call cmos
        mov $kbc, %esi
        call puts
        mov $0x64, %dx
        mov $0xaa, %al                  /* controller self-test */
        out %al, %dx
        mov $0x60, %dx
        in %dx, %al
        call puthex8
        mov $nl, %esi
        call puts
        jmp poweroff
button:                                 /* enable the power button, wait for it, power off */
        mov $0x602, %dx
        mov $0x0100, %ax                /* PM1_EN.PWRBTN_EN */
        out %ax, %dx
        mov $armed, %esi
        call puts
9:      mov $0x600, %dx
        in %dx, %ax
        test $0x0100, %ax               /* PM1_STS.PWRBTN_STS */
        jz 9b
        out %ax, %dx                    /* write 1 to clear */
        mov $pressed, %esi
        call puts
        jmp poweroff
halt:
        cli
        hlt
        jmp halt

putc_sp:
        mov $' ', %al
putc:   push %edx
        mov $0x3f8, %dx
        out %al, %dx
        pop %edx
        ret
cmos:   mov $0x70, %dx                  /* print CMOS register %al as two hex digits */
        out %al, %dx
        mov $0x71, %dx
        in %dx, %al
puthex8:
        push %ecx
        shl $24, %eax
        mov $2, %ecx
        jmp 8f
puts:   push %eax
6:      lodsb
        test %al, %al
        jz 7f
        call putc
        jmp 6b
7:      pop %eax
        ret
puthex: push %ecx
        mov $8, %ecx
8:      rol $4, %eax
        push %eax
        and $15, %eax
        mov hexd(%eax), %al
        call putc
        pop %eax
        dec %ecx
        jnz 8b
        pop %ecx
        ret

        .data
hello:  .asciz "PAYLOAD cmdline="
nl:     .asciz "\n"
sp:     .asciz " "
e820:   .asciz "PAYLOAD e820 "
tick:   .asciz "PAYLOAD tick "
survived: .asciz "PAYLOAD survived\n"
rtc:    .asciz "PAYLOAD rtc "
kbc:    .asciz " i8042="
armed:  .asciz "PAYLOAD button armed\n"
pressed: .asciz "PAYLOAD button pressed\n"
hexd:   .ascii "0123456789abcdef"
        .p2align 3
nullidt: .word 0
        .long 0
