/*
 * main.c — closedloop-join: configuration in, worker run, exit status out.
 */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "closedloop-join: worker not wired yet\n");
    return 1;
}
