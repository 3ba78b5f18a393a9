import sys
def main():
    print("todo", sys.executable)
if __name__ == "__main__":
    main()
