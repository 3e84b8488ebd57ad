// The schedules an EngineConfig implies (see engine_config.h).
#include "engine/engine_config.h"

namespace baton {

ScheduleSpec EngineConfig::TrainSchedule() const {
  ScheduleSpec spec;
  spec.stages = mesh.pp;
  spec.microbatches = microbatches;
  if (mesh.pp > 1) {
    spec.kind = pipeline.schedule;
    spec.virtual_stages = pipeline.virtual_stages;
  }
  return spec;
}

ScheduleSpec EngineConfig::EvalSchedule(int batches) const {
  ScheduleSpec spec = TrainSchedule();
  spec.microbatches = batches;
  spec.forward_only = true;
  return spec;
}

}  // namespace baton
