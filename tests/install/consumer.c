/* Built against an installed purecache; prints the policy it linked. */
#include <purecache.h>
#include <stdio.h>

int main(void)
{
    pc_options o = {.capacity = 2};
    pc_cache *c;
    char v[8];
    size_t n;

    if (pc_create(&o, &c) != PC_OK || pc_put(c, "k", 1, "v", 1) != PC_OK ||
        pc_get(c, "k", 1, v, sizeof v, &n) != PC_OK || n != 1)
        return 1;
    pc_destroy(c);
    puts(pc_policy());
    return 0;
}
