// The emulated WAN lives in @peerpull/demo (`peerpull demo --real` runs its upstream behind one too).
export * from '@peerpull/demo/wan-link';
