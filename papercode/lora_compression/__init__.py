"""Compress then Serve (Brüel-Gabrielsson et al., ICML 2025, arXiv:2407.00066): joint compression of many LoRA adapters into shared bases, clustering, and batched multi-adapter serving."""
from papercode.lora_compression.data import SlotStack, SyntheticCollection, make_lora_collection, stack_collection, stack_slot
from papercode.lora_compression.compress import JDCompressed, MemoryReport, factored_svd, jd_diag, jd_full, project, svd_compress
from papercode.lora_compression.cluster import adjusted_rand_index, cluster_jd, cluster_jd_fixed
from papercode.lora_compression.serve import ServingPoint, bench_serving, bgmv_forward, jd_forward, loop_forward
from papercode.lora_compression.tasks import TaskSuite, make_task_suite, task_accuracy, train_task_loras
