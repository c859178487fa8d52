# The pricer service on Modal's serverless GPUs: the same FastAPI app as notebook 15, in a container
# that starts on the first request and stops when idle. Nothing runs until you deploy it:
#   pip install modal && modal setup            # an account; GPU seconds are billed
#   modal volume put pricer-results results/    # what notebooks 08-14 saved (the service rebuilds from it)
#   modal serve deploy/modal_app.py             # a temporary URL while it runs; modal deploy keeps it
import modal

app = modal.App("course-pricer")
results = modal.Volume.from_name("pricer-results", create_if_missing=True)
cache = modal.Volume.from_name("pricer-cache", create_if_missing=True)  # the merged GGUF, the fitted stack

image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("build-essential", "cmake", "git")
    # CUDA llama.cpp for the specialist and the RAG chat model; the rest as the course pins it
    .env({"CMAKE_ARGS": "-DGGML_CUDA=on -DLLAVA_BUILD=OFF"})
    .add_local_dir(".", remote_path="/course", copy=True, ignore=[".venv", "results", "build", ".git"])
    .run_commands("pip install '/course[cpu]'")
    .env({"COURSE_PROFILE": "offline", "COURSE_RESULTS": "/results", "COURSE_CACHE": "/cache",
          "COURSE_SERVICE_PRICERS": "ensemble,baseline,specialist,rag", "COURSE_LLM": "local"})
)


@app.function(
    image=image,
    gpu="T4",  # enough for the 135M specialist and the 0.5-1.5B chat model; an L4 or A10G for larger ones
    volumes={"/results": results, "/cache": cache},
    scaledown_window=300,  # seconds idle before the container stops (and billing with it)
    timeout=600,
)
@modal.concurrent(max_inputs=16)  # one container takes up to 16 requests at once before another starts
@modal.asgi_app()
def pricer():
    from course_utils.serving.service import app_from_env

    return app_from_env()
