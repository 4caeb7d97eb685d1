/* closedloop-outcomes entry point: everything but process exit lives in outcomes.c. */
int main(void)
{
    return 0;
}
