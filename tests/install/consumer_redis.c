/* Built against an installed purecache_redis: creates a Redis backend (no
 * server needed: port 1 refuses at once), checks that a request reports
 * PC_EIO, and prints the policy of the core library it linked. */
#include <purecache_redis.h>
#include <stdio.h>

int main(void)
{
    pc_redis_options o = {.port = 1, .near_capacity = 8, .timeout_ms = 200};
    pc_backend be;
    char v[8];
    size_t n;

    if (pc_redis_backend(&o, &be) != PC_OK ||
        be.ops->get(be.self, "k", 1, v, sizeof v, &n) != PC_EIO)
        return 1;
    be.ops->destroy(be.self);
    puts(pc_policy());
    return 0;
}
