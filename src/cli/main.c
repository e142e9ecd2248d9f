#include "base/base.h"
#include <stdio.h>
int main(void) { puts("ckey"); return 0; }
