// Command-line dispatch for `baton <command>` (DESIGN.md: the command line
// is a contract). Returns the process exit status: 0 done, 2 bad input,
// 1 failure at run time.
#pragma once

namespace baton {
int RunCli(int argc, char** argv);
}  // namespace baton
