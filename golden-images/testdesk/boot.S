/* golden-images/testdesk/boot.S: the whole of testdesk's ring 0.
 *
 * PVH entry (32-bit protected mode, paging off, %ebx = hvm_start_info) -> long mode on static
 * identity page tables (0..4 GiB, 2 MiB pages, user-accessible) -> GDT, TSS, IDT -> iretq to
 * ring 3 with IOPL 3. Everything else (device set-up, the desktop loop) runs in ring 3, which on
 * our nested-KVM machines runs natively while ring 0 is emulated. What stays here:
 *  - the interrupt stub (count the interrupt, EOI the xAPIC),
 *  - the sleep call (a `hlt` in ring 3, caught as #GP): rax=0 sleep until an interrupt (rdi =
 *    the count ring 3 last saw, so an interrupt that came after ring 3 looked is never slept
 *    through), rax=1 halt for good,
 *  - exception stubs that report on serial (td_fault) and halt,
 *  - the AP path: real-mode trampoline (copied to 0x8000 by ring 3) -> long mode -> count in.
 * The IDT itself is filled in by ring 3 (td_idt is user-writable) before it enables interrupts.
 */
#include "golden-images/testdesk/asm.h"

/* PVH: Xen ELF note 18 (XEN_ELFNOTE_PHYS32_ENTRY) holds the 32-bit entry point. */
        .section .note.pvh, "a"
        .p2align 2
        .long 4                         /* name size: "Xen\0" */
        .long 4                         /* descriptor size */
        .long 18                        /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long td_pvh_start

        .section .text.boot, "ax"
        .code32
        .globl td_pvh_start
td_pvh_start:
        cli
        cld
        movl %ebx, td_start_info
        lgdt td_gdt_desc
        movl $0x10, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        ljmp $0x18, $1f
1:      jmp td_enter_long32             /* no stack yet: the PVH entry has none */

/* Shared by the BSP and the APs: PAE, CR3, EFER.LME, paging -> 64-bit code at td_long64(_ap).
 * Entered with %esi = 64-bit target. */
        .globl td_enter_long32
td_enter_long32:
        movl %cr4, %eax
        orl $0x20, %eax                 /* PAE */
        movl %eax, %cr4
        movl $td_pml4, %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx          /* EFER */
        rdmsr
        orl $0x100, %eax                /* LME */
        wrmsr
        movl %cr0, %eax
        orl $0x80000001, %eax           /* PG | PE */
        movl %eax, %cr0
        cmpl $0, td_in_ap
        jne 2f
        ljmp $0x08, $td_long64
2:      ljmp $0x08, $td_long64_ap

        .code64
td_long64:
        lgdt td_gdt_desc64
        movl $0x10, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        xorl %eax, %eax
        movl %eax, %fs
        movl %eax, %gs
        leaq td_kstack_top(%rip), %rsp
        /* TSS descriptor base (the image lies below 16 MiB: bits 24..63 stay 0). */
        leaq td_tss(%rip), %rax
        movw %ax, td_gdt + 0x32(%rip)
        shrl $16, %eax
        movb %al, td_gdt + 0x34(%rip)
        movw $0x30, %ax
        ltr %ax
        lidt td_idt_desc(%rip)
        movl td_start_info(%rip), %edi
        pushq $0x23                     /* ss: user data */
        leaq td_ustack_top(%rip), %rax
        pushq %rax
        pushq $0x3002                   /* rflags: IOPL 3, IF 0 */
        pushq $0x2b                     /* cs: user code */
        leaq td_user_main(%rip), %rax
        pushq %rax
        iretq

/* An AP: count in, then stay halted with interrupts off. */
td_long64_ap:
        movl $0x10, %eax
        movl %eax, %ds
        movl %eax, %ss
        lock incl td_ap_count(%rip)
3:      cli
        hlt
        jmp 3b

/* ---- Interrupts ---------------------------------------------------------------------------- */
        .text
        .globl td_irq_stub
        .p2align 4
td_irq_stub:
        pushq %rax
        lock incq td_irq_count(%rip)
        movl $TD_LAPIC_BASE + 0xb0, %eax   /* xAPIC EOI */
        movl $0, (%rax)
        popq %rax
        iretq

        .globl td_spurious_stub
        .p2align 4
td_spurious_stub:
        iretq                           /* spurious vector: no EOI */

/* The sleep call. On our nested-KVM machines ring 3 runs natively and neither `int $n` (#UD)
 * nor `syscall` (no switch to CPL 0) reaches ring 0 from there; exceptions do. So ring 3 asks by
 * executing `hlt` (rax = 0: sleep unless the interrupt count moved past rdi; rax = 1: halt for
 * good), which raises #GP(0); this handler recognises that and answers, past the `hlt`. */
        .p2align 4
        .globl td_exc13
td_exc13:
        testb $3, 16(%rsp)              /* frame: error, rip, cs, rflags, rsp, ss */
        jz 9f
        pushq %rax
        movq 16(%rsp), %rax
        cmpb $0xf4, (%rax)              /* hlt? */
        popq %rax
        jne 9f
        addq $1, 8(%rsp)                /* resume after the hlt */
        addq $8, %rsp                   /* drop the error code */
        cmpq $1, %rax
        je 5f
        cmpq td_irq_count(%rip), %rdi
        jne 4f
        sti                             /* sti; hlt: no interrupt slips in between */
        hlt
        cli
4:      movq td_irq_count(%rip), %rax
        iretq
5:      cli
        hlt
        jmp 5b
9:      pushq $13
        jmp td_exc_common

/* Exceptions: push a uniform frame (vector, error code) and report. */
.macro EXC vec, has_err
        .p2align 4
        .globl td_exc\vec
td_exc\vec:
        .if \has_err == 0
        pushq $0
        .endif
        pushq $\vec
        jmp td_exc_common
.endm
        EXC 0,0
        EXC 1,0
        EXC 2,0
        EXC 3,0
        EXC 4,0
        EXC 5,0
        EXC 6,0
        EXC 7,0
        EXC 8,1
        EXC 9,0
        EXC 10,1
        EXC 11,1
        EXC 12,1
        EXC 14,1
        EXC 15,0
        EXC 16,0
        EXC 17,1
        EXC 18,0
        EXC 19,0
        EXC 20,0
        EXC 21,1
        EXC 22,0
        EXC 23,0
        EXC 24,0
        EXC 25,0
        EXC 26,0
        EXC 27,0
        EXC 28,0
        EXC 29,1
        EXC 30,1
        EXC 31,0

td_exc_common:
        movq %rsp, %rdi                 /* -> vector, error, rip, cs, rflags, rsp, ss */
        andq $-16, %rsp
        call td_fault
6:      cli
        hlt
        jmp 6b

/* Exception stub addresses, for ring 3 to fill the IDT with. */
        .section .rodata
        .globl td_exc_stubs
        .p2align 3
td_exc_stubs:
        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad td_exc\v
        .endr

/* ---- AP trampoline: copied to TD_TRAMPOLINE (0x8000), started by SIPI vector 0x08 ---------- */
        .globl td_tramp_start, td_tramp_end
        .p2align 4
        .code16
td_tramp_start:
        cli
        cld
        movw %cs, %ax
        movw %ax, %ds
        lgdtl td_tramp_gdtd - td_tramp_start
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $0x18, $(TD_TRAMPOLINE + td_tramp32 - td_tramp_start)
        .code32
td_tramp32:
        movl $0x10, %eax
        movl %eax, %ds
        movl %eax, %es
        movl %eax, %ss
        movl $1, td_in_ap
        ljmp $0x18, $td_enter_long32
        .p2align 2
td_tramp_gdtd:
        .word td_gdt_end - td_gdt - 1
        .long td_gdt
td_tramp_end:
        .code64

/* ---- Tables -------------------------------------------------------------------------------- */
        .data
        .p2align 4
        .globl td_gdt
td_gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
        .quad 0x00cf92000000ffff        /* 0x10 kernel data */
        .quad 0x00cf9a000000ffff        /* 0x18 kernel code, 32-bit */
        .quad 0x00cff2000000ffff        /* 0x20 user data (0x23) */
        .quad 0x00affa000000ffff        /* 0x28 user code, 64-bit (0x2b) */
        .quad 0x0000890000002068        /* 0x30 TSS (base filled in at boot), limit 0x2068 */
        .quad 0
td_gdt_end:
        .p2align 3
td_gdt_desc:
        .word td_gdt_end - td_gdt - 1
        .long td_gdt
        .p2align 3
td_gdt_desc64:
        .word td_gdt_end - td_gdt - 1
        .quad td_gdt
        .p2align 3
td_idt_desc:
        .word 256 * 16 - 1
        .quad td_idt

        .p2align 4
        .globl td_tss
td_tss:
        .long 0
        .quad td_kstack_top             /* rsp0 */
        .fill 88, 1, 0
        .word 104                       /* I/O bitmap offset */
        /* Every port allowed. IOPL 3 alone should do, but some nested hypervisors run ring 3
         * with their own IOPL and check only this bitmap. */
        .fill 8192, 1, 0
        .byte 0xff
        .globl td_start_info, td_irq_count, td_ap_count, td_in_ap
        .p2align 3
td_start_info:  .quad 0
td_irq_count:   .quad 0
td_ap_count:    .long 0
td_in_ap:       .long 0

/* Identity map of 0..4 GiB in 2 MiB pages, present|writable|user (ring 3 drives the devices). */
        .section .data.pgtable, "aw"
        .p2align 12
        .globl td_pml4, td_pdpt
td_pml4:
        .quad td_pdpt + 7
        .fill 511, 8, 0
td_pdpt:
        .quad td_pd + 7
        .quad td_pd + 0x1000 + 7
        .quad td_pd + 0x2000 + 7
        .quad td_pd + 0x3000 + 7
        .fill 508, 8, 0
td_pd:
        .set i, 0
        .rept 2048
        .quad (i << 21) | 0x87
        .set i, i + 1
        .endr

        .bss
        .p2align 12
        .globl td_idt
td_idt:         .fill 256 * 16, 1, 0
        .p2align 4
                .fill 16384, 1, 0
td_kstack_top:
                .fill 65536, 1, 0
        .globl td_ustack_top
td_ustack_top:
