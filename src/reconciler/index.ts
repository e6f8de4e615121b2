export { planVm, launchEffect, describeExit } from './vm-plan.js';
export type { DesiredVm, DesiredImage, LaunchedVm, ObservedVm, VmAction } from './vm-plan.js';
export { reportVm, FAILED_AFTER } from './vm-status.js';
export type { Phase, ConditionState, NodeVmContext, VmReport } from './vm-status.js';
export { WorkQueue } from './queue.js';
export type { QueueOptions, QueueClock, Worker } from './queue.js';
export { desiredVmsFor } from './desired.js';
export { NodeReconciler } from './node-reconciler.js';
export type { NodeReconcilerDeps, ImageAccess, ReportedVm, VmEvent } from './node-reconciler.js';
