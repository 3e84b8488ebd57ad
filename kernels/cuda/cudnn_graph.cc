// Plan finalization for cudnn_graph.h: heuristics, engine filtering, plan.
#ifdef BATON_HAVE_CUDNN

#include "kernels/cuda/cudnn_graph.h"

namespace baton::cuda {

absl::Status FinalizeGraph(cudnnHandle_t handle, cudnnBackendDescriptor_t device_prop,
                           bool deterministic, CudnnGraph& graph, CudnnDesc& plan_out,
                           int64_t* workspace_bytes, std::string* engine_info) {
  CudnnDesc& og = graph.New();
  BATON_RETURN_IF_ERROR(og.Create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR));
  std::vector<cudnnBackendDescriptor_t> ops = graph.ops();
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (handle != nullptr)
    BATON_CHECK_CUDNN(cudnnBackendSetAttribute(og.get(), CUDNN_ATTR_OPERATIONGRAPH_HANDLE,
                                               CUDNN_TYPE_HANDLE, 1, &handle));
#pragma GCC diagnostic pop
  BATON_CHECK_CUDNN(cudnnBackendSetAttribute(og.get(), CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                             CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                             static_cast<int64_t>(ops.size()), ops.data()));
  BATON_CHECK_CUDNN(cudnnBackendFinalize(og.get()));

  CudnnDesc heur;
  BATON_RETURN_IF_ERROR(heur.Create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR));
  cudnnBackendDescriptor_t ogd = og.get();
  BATON_CHECK_CUDNN(cudnnBackendSetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                             CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &ogd));
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  BATON_CHECK_CUDNN(cudnnBackendSetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_MODE,
                                             CUDNN_TYPE_HEUR_MODE, 1, &mode));
  if (device_prop != nullptr)
    BATON_CHECK_CUDNN(cudnnBackendSetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_DEVICEPROP,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &device_prop));
  BATON_CHECK_CUDNN(cudnnBackendFinalize(heur.get()));
  int64_t count = 0;
  BATON_CHECK_CUDNN(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                             CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
  std::vector<std::unique_ptr<CudnnDesc>> cfgs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < count; ++i) {
    cfgs.push_back(std::make_unique<CudnnDesc>());
    BATON_RETURN_IF_ERROR(cfgs.back()->Create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw.push_back(cfgs.back()->get());
  }
  int64_t got = 0;
  if (count > 0)
    BATON_CHECK_CUDNN(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                                               raw.data()));
  std::string tried;  // for the error: every config and why it was refused
  for (int64_t i = 0; i < got; ++i) {
    CudnnDesc engine;
    BATON_RETURN_IF_ERROR(engine.Create(CUDNN_BACKEND_ENGINE_DESCRIPTOR));
    cudnnBackendDescriptor_t ed = engine.get();
    int64_t n = 0, index = -1;
    // Engine index and numerical notes are for the log and the determinism
    // filter; an engine that cannot report them is still tried (the
    // benchmark's bitwise-repeat check is the final word on determinism).
    std::array<cudnnBackendNumericalNote_t, CUDNN_NUMERICAL_NOTE_TYPE_COUNT> notes{};
    int64_t n_notes = 0;
    std::string note_list = "?";
    if (cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                 1, &n, &ed) == CUDNN_STATUS_SUCCESS) {
      cudnnBackendGetAttribute(ed, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &index);
      if (cudnnBackendGetAttribute(ed, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                   notes.size(), &n_notes, notes.data()) == CUDNN_STATUS_SUCCESS)
        note_list.clear();
    }
    bool nondeterministic = false;
    // Note codes: 0 tensor core, 1 down-convert inputs, 2 reduced-precision reduction, 4
    // nondeterministic.
    for (int64_t j = 0; j < n_notes; ++j) {
      nondeterministic |= notes[j] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC;
      absl::StrAppend(&note_list, j ? "," : "", static_cast<int>(notes[j]));
    }
    absl::StrAppend(&tried, "\n  engine ", index, " notes [", note_list, "]: ");
    if (deterministic && nondeterministic) {
      absl::StrAppend(&tried, "refused (nondeterministic)");
      continue;
    }
    CudnnDesc plan;
    BATON_RETURN_IF_ERROR(plan.Create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    if (handle != nullptr)
      BATON_CHECK_CUDNN(cudnnBackendSetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                                 CUDNN_TYPE_HANDLE, 1, &handle));
#pragma GCC diagnostic pop
    if (device_prop != nullptr)
      BATON_CHECK_CUDNN(cudnnBackendSetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP,
                                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &device_prop));
    BATON_CHECK_CUDNN(cudnnBackendSetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw[i]));
    const absl::Status fin = FromCudnn(cudnnBackendFinalize(plan.get()),
                                       "cudnnBackendFinalize(plan)", __FILE__, __LINE__);
    if (!fin.ok()) {
      absl::StrAppend(&tried, fin.message());
      continue;
    }
    BATON_CHECK_CUDNN(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                               CUDNN_TYPE_INT64, 1, &n, workspace_bytes));
    plan_out.Swap(plan);
    *engine_info = absl::StrCat("engine ", index, " notes [", note_list, "]");
    return absl::OkStatus();
  }
  return absl::UnimplementedError(
      absl::StrCat("no cuDNN engine config finalized (", got, " from heuristics mode A):", tried));
}

}  // namespace baton::cuda

#endif  // BATON_HAVE_CUDNN
