// The `baton` executable: hands argv to the CLI dispatcher in launcher/cli.
#include "launcher/cli.h"

int main(int argc, char** argv) { return baton::RunCli(argc, argv); }
