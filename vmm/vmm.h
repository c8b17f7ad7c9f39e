/* vmm/vmm.h: the public face of vdi-vmm's machine (prefix vmm_). The program is built from
 * vmm/main.c; other modules see only the opaque VM type. */
#ifndef VDI_VMM_VMM_H
#define VDI_VMM_VMM_H

typedef struct vmm_vm vmm_vm_t; /* opaque; owned by vmm/main.c */

#endif /* VDI_VMM_VMM_H */
