// Command-line dispatch (see cli.h).
#include "launcher/cli.h"

#include <cstdio>
#include <cstring>

namespace baton {

int RunCli(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0) {
    std::fprintf(stderr, "usage: baton <train|data> ...\n");
    return argc < 2 ? 2 : 0;
  }
  std::fprintf(stderr, "baton: error: unknown command '%s'\n", argv[1]);
  return 2;
}

}  // namespace baton
