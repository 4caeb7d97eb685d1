/*
 * main.c — closedloop-refit: configuration in, worker run, exit status out.
 */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "closedloop-refit: not built yet\n");
    return 1;
}
