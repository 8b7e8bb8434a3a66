/* Stand-in for registry.k8s.io/e2e-test-images/nonewprivs: installed setuid root, prints the effective
 * uid it runs with (0 when no_new_privs is off, the caller's uid when it is on). */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
