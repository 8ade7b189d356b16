// caracal-log: look inside a Caracal log directory without changing it.
//
//   caracal-log inspect DIR                  segments, ranges, term runs, prefix base
//   caracal-log dump DIR [--from N] [--to N] one line per entry / hole run
//   caracal-log verify DIR                   full scan; exit 0 clean, 1 corrupt, 2 torn tail

#include <iostream>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "spdlog/spdlog.h"
#include "tools/log/log_tool.h"

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::err);  // the commands report recovery notes themselves
  CLI::App app{"caracal-log: inspect, dump and verify a Caracal log directory (read-only)"};
  app.require_subcommand(1, 1);

  std::string dir;
  caracal::Index from = 0, to = 0;
  auto* inspect = app.add_subcommand("inspect", "segments with index ranges, sizes, entry/hole counts, term runs");
  inspect->add_option("DIR", dir, "log directory")->required()->check(CLI::ExistingDirectory);
  auto* dump = app.add_subcommand("dump", "one line per entry (index term timestamp type payload-bytes) or hole run");
  dump->add_option("DIR", dir, "log directory")->required()->check(CLI::ExistingDirectory);
  auto* from_opt = dump->add_option("--from", from, "first index to print (default: the first index held)");
  auto* to_opt = dump->add_option("--to", to, "last index to print (default: the last index held)");
  auto* verify = app.add_subcommand("verify", "scan and decode every record; exit 0 clean, 1 corrupt, 2 torn tail");
  verify->add_option("DIR", dir, "log directory")->required()->check(CLI::ExistingDirectory);

  CLI11_PARSE(app, argc, argv);

  if (inspect->parsed()) return caracal::tools::InspectLog(dir, std::cout, std::cerr);
  if (dump->parsed()) {
    std::optional<caracal::Index> f, t;
    if (from_opt->count() > 0) f = from;
    if (to_opt->count() > 0) t = to;
    return caracal::tools::DumpLog(dir, f, t, std::cout, std::cerr);
  }
  return caracal::tools::VerifyLog(dir, std::cout, std::cerr);
}
